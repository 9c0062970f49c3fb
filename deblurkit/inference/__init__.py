"""Running a loaded model over images: devices, memory, tiles, single arrays and whole batches of files."""
