"""The decoder and what it is trained with: the paper's Figure 3 from identity features to a normalized face.

- :mod:`.decoder`: features → shared layer → landmark MLP + texture CNN → texture warped onto the landmarks
  (:mod:`normface_lib.warp`);
- :mod:`.texture`: the texture frame (register a face onto the mean shape, render a texture onto landmarks);
- :mod:`.losses`: landmark, texture and identity (FaceNet) losses;
- :mod:`.morph`: the paper's morphing augmentation;
- :mod:`.checkpoint`: a trained decoder on disk (safetensors + JSON).
"""
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .decoder import Decoder, decode, stage_channels, upsampling_plan
from .losses import NormFaceLoss, embedding_distance, identity_loss, landmark_loss, texture_loss
from .morph import MorphBatch, blend, random_morphs  # (the module nets.morph also holds morph())
from .texture import register_textures, render

__all__ = ["Checkpoint", "load_checkpoint", "save_checkpoint", "Decoder", "decode", "stage_channels",
           "upsampling_plan", "NormFaceLoss", "embedding_distance", "identity_loss", "landmark_loss", "texture_loss",
           "MorphBatch", "blend", "random_morphs", "register_textures", "render"]
