"""Policy networks: diffusion denoisers (1-D conditional U-Net, transformer) and observation encoders."""

from robot_learning.policies.nets.encoders import (
    DepthEncoder,
    EncoderConfig,
    InputSpec,
    ObservationEncoder,
    ResNetGN,
    SpatialSoftmax,
    StateEncoder,
    TactileEncoder,
    center_crop,
    image_to_unit,
    random_crop,
)
from robot_learning.policies.nets.transformer import TransformerDenoiser
from robot_learning.policies.nets.unet1d import ConditionalUnet1D, SinusoidalEmbedding

__all__ = [
    "ConditionalUnet1D", "DepthEncoder", "EncoderConfig", "InputSpec", "ObservationEncoder",
    "ResNetGN", "SinusoidalEmbedding", "SpatialSoftmax", "StateEncoder", "TactileEncoder",
    "TransformerDenoiser", "center_crop", "image_to_unit", "random_crop",
]
