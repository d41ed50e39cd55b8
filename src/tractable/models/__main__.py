"""``python -m tractable.models``: the image presets' parameter counts beside the published ones."""

from .image_registry import print_parameter_counts

print_parameter_counts()
