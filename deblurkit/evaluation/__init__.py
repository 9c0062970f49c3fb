"""Benchmark evaluation: scoring (restored, reference) pairs the way published benchmark tables do.

:mod:`deblurkit.evaluation.protocols` holds the registry of protocols (``gopro``, ``hide``, ``dpdd``,
``realblur``, ``plain``), each following one benchmark's official evaluation script;
:mod:`deblurkit.evaluation.alignment` holds RealBlur's intensity matching and ECC homography
alignment (OpenCV, an optional dependency: ``pip install "deblurkit[realblur]"``).
"""
