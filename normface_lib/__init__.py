"""normface: synthesizing normalized faces from facial identity features (Cole et al., CVPR 2017).

The paper's Figure 3 as folders, in the order a photo travels:

    photo ─ faces/ ─ encoders/ ─ nets/ (decoder: landmark MLP + texture CNN) ─ warp/ ─ normalized face
            load,    frozen        losses and morphs serve training/;           thin-plate
            detect,  FaceNet       data/ holds the training tables               spline
            align    features

- ``faces/``      photo → aligned face: loading, MTCNN + dlib landmarks, alignment, landmark geometry, mean shape
- ``encoders/``   frozen face-recognition networks (FaceNet, dlib ResNet, VGG-Face) and their feature cache
- ``nets/``       the decoder, the texture frame, the losses, the morphs, checkpoints
- ``warp/``       the differentiable thin-plate spline warp (the paper's contribution we implement ourselves)
- ``data/``       training tables (ORL offline, CelebA online) and photo sets (LFW, portraits, your folder)
- ``training/``   the profiles and the trainer
- ``pipeline.py`` :class:`NormFace`: detect → align → encode → decode → warp for a user's photo
- ``apps/``       colour correction, 3D avatars, attributes, the notebook explorer
- ``evaluation/`` metrics, baselines, judges, the evaluation protocol of notebook 03
- ``study/``      the seed study behind every verdict in the book, and the bands reruns are checked against
- ``core/``       errors, input checks, files and caches, seeding and devices, provenance
- ``cli.py``      the ``normface`` command; ``figures.py`` the notebooks' plots

Imports only point down this list's dependency order (``CONTRIBUTING.md`` draws it): evaluation and apps use a trained
model and never training; nothing imports ``study``.
"""
__version__ = "0.1.0"


def __getattr__(name):  # lazy: `import normface_lib` stays cheap, `normface_lib.NormFace` loads the model code
    if name == "NormFace":
        from .pipeline import NormFace

        return NormFace
    raise AttributeError(f"module 'normface_lib' has no attribute {name!r}")


__all__ = ["NormFace", "__version__"]
