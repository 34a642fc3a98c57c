"""The paper's applications, as library code.

* :mod:`normface_lib.apps.colour`: exposure and colour correction of a photo from its normalized face.
* :mod:`normface_lib.apps.avatar`: a textured 3D face mesh fitted to a normalized face (OBJ export, rendering).
* :mod:`normface_lib.apps.attributes`: facial attributes and their within-person stability.
"""
from . import attributes, avatar, colour
from .attributes import (appearance_attributes, geometric_attributes, skin_mask, spread_table,
                         within_person_spread)
from .avatar import Mesh, canonical_mesh, export_obj, fit_mesh, load_obj, render_views
from .colour import (ColourTransform, apply_colour_transform, colour_error, correct_photo, fit_colour_transform,
                     grey_world, perturb_exposure_white_balance)

__all__ = [
    "attributes", "avatar", "colour",
    "appearance_attributes", "geometric_attributes", "skin_mask", "spread_table", "within_person_spread",
    "Mesh", "canonical_mesh", "export_obj", "fit_mesh", "load_obj", "render_views",
    "ColourTransform", "apply_colour_transform", "colour_error", "correct_photo", "fit_colour_transform",
    "grey_world", "perturb_exposure_white_balance",
]
