"""Making blurry/sharp training pairs: synthetic blur kernels and real blur averaged from video frames."""
