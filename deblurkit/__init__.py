"""deblurkit: deblur photos with a zoo of restoration networks, fine-tune them with MAE perceptual losses.

The library API::

    import deblurkit
    model = deblurkit.load_model("nafnet-gopro-width32", device="cuda")   # a torch.nn.Module
    restored = model(batch)                                                # B×3×H×W in [0, 1], any H, W
"""

from ._version import __version__
from .errors import DeblurkitError, ImageReadError, ModelNotFoundError, WeightsError
from .zoo.models import load_model, save_model
from .zoo.restorer import Restorer

__all__ = [
    "DeblurkitError",
    "ImageReadError",
    "ModelNotFoundError",
    "Restorer",
    "WeightsError",
    "__version__",
    "load_model",
    "save_model",
]
