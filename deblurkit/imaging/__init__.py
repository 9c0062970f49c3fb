"""Image files in and out: finding, reading, writing (atomically) and comparing images."""
