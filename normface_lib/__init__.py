"""normface: synthesizing normalized faces from facial identity features (Cole et al., CVPR 2017).

Figure 3 of the paper, module by module:

- ``encoders/``      frozen face-recognition networks (FaceNet InceptionResnetV1, dlib ResNet, VGG-Face)
- ``decoder.py``     shared layer → landmark MLP + texture CNN (texture in the mean-shape frame)
- ``warp.py``        differentiable thin-plate spline warp of the texture onto the landmarks
- ``losses.py``      landmark, texture and identity (FaceNet) losses
- ``morph.py``       morphing augmentation; ``train.py`` the trainer; ``model.py`` :class:`NormFace`

Data and evaluation: ``preprocessing.py``, ``data.py``, ``evaluate.py``; applications in ``apps/``; the
``normface`` command in ``cli.py``.
"""
__version__ = "0.1.0"


def __getattr__(name):  # lazy: `import normface_lib` stays cheap, `normface_lib.NormFace` loads the model code
    if name == "NormFace":
        from .model import NormFace

        return NormFace
    raise AttributeError(f"module 'normface_lib' has no attribute {name!r}")


__all__ = ["NormFace", "__version__"]
