"""``python -m normface_lib.data``: regenerate ``normface_lib/assets/mean_shape_68.json`` from the default ORL split."""
from .orl import write_mean_shape

print(write_mean_shape(force=True))
