"""Photo → face: the first arrow of the paper's Figure 3.

- :mod:`.images`: read any photo as an RGB float tensor ``[3,H,W]`` in ``[0,1]``;
- :mod:`.detect`: MTCNN boxes → the chosen face → dlib's 68 landmarks (cached on disk);
- :mod:`.align`: the similarity into the canonical frame and the aligned crops; ``face_from_photo`` runs the whole path;
- :mod:`.landmarks`: the 68 points as geometry (index groups, anchors, inter-ocular distance, mirror images, pose and
  expression scores, the mean shape);
- :mod:`.perturb`: degraded crops for robustness tests.

The canonical frame: a square crop of side ``S`` in which the eye centres and the mouth centre of the 68 landmarks sit,
in the least-squares sense, at :data:`CANONICAL_ANCHORS` (fractions of ``S``). Landmarks are ``(x, y)`` pixels with
the centre of the top-left pixel at ``(0, 0)``. Everything downstream (encoders, decoder, metrics) works on such crops.
"""
from .align import (PHOTO_ERRORS, Face, align_faces, apply_affine, canonical_transform, face_from_photo,
                    faces_from_photos, faces_in_photo, faces_in_photos, fit_similarity, invert_affine, mirror_faces,
                    photo_label, warp_affine)
from .detect import (LANDMARK_CODE_VERSION, MAX_DETECT_SIDE, MIN_DETECT_SIDE, cached_landmarks, check_face,
                     detect_all_landmarks, detect_faces, detect_faces_batch, detect_landmarks, detection_view,
                     landmarks_in_box, landmarks_in_boxes)
from .images import load_image, side_by_side, to_uint8_hwc
from .landmarks import (CANONICAL_ANCHORS, INNER_LIP_PAIRS, JAW, LEFT_EYE, MIRROR_PERMUTATION, MOUTH, NOSE_TIP,
                        FRONTAL_NEUTRAL_LIMITS, RIGHT_EYE, frontal_neutral_failures, SCORE_WEIGHTS, anchor_points, frontal_neutral_score, interocular,
                        is_frontal_neutral, load_mean_shape,
                        mean_shape, mirror_landmarks, pose_measures, save_mean_shape)
from .perturb import DEFAULT_STRENGTH, HARD_PARTS, PERTURBATIONS, perturb

__all__ = [
    "PHOTO_ERRORS", "Face", "align_faces", "apply_affine", "canonical_transform", "face_from_photo",
    "faces_from_photos", "faces_in_photo", "faces_in_photos", "fit_similarity", "invert_affine", "mirror_faces",
    "photo_label", "warp_affine", "LANDMARK_CODE_VERSION", "MAX_DETECT_SIDE", "MIN_DETECT_SIDE", "cached_landmarks", "check_face",
    "detect_all_landmarks", "detect_faces", "detect_faces_batch", "detect_landmarks", "detection_view",
    "landmarks_in_box", "landmarks_in_boxes", "load_image", "side_by_side", "to_uint8_hwc",
    "CANONICAL_ANCHORS", "INNER_LIP_PAIRS", "JAW", "LEFT_EYE", "MIRROR_PERMUTATION", "MOUTH", "NOSE_TIP", "RIGHT_EYE",
    "FRONTAL_NEUTRAL_LIMITS", "frontal_neutral_failures", "is_frontal_neutral", "SCORE_WEIGHTS", "anchor_points", "frontal_neutral_score", "interocular", "load_mean_shape", "mean_shape",
    "mirror_landmarks", "pose_measures", "save_mean_shape", "DEFAULT_STRENGTH", "HARD_PARTS", "PERTURBATIONS", "perturb",
]
