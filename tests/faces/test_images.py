"""normface_lib.faces.load_image on the files and objects users have: 16-bit and floating-point images read right, and
every bad input a message (real files written here)."""
import numpy as np
import pytest
import torch
from PIL import Image

from normface_lib import faces
from normface_lib.core import resources
from normface_lib.core.errors import InputError, NoFaceError, UnreadableImageError


@pytest.fixture(scope="module")
def orl_grey():
    """An ORL photo as 8-bit grey values [H,W] (it holds a face MTCNN finds)."""
    return np.asarray(Image.open(resources.orl_dir() / "s1" / "1.pgm"))


def test_16_bit_and_float_files_read_like_the_8_bit_photo(orl_grey, tmp_path):
    ref = faces.load_image(Image.fromarray(orl_grey))
    Image.fromarray(orl_grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")  # I;16
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I")
    Image.fromarray(orl_grey.astype(np.float32) / 255.0, mode="F").save(tmp_path / "float.tiff")
    Image.fromarray(orl_grey.astype(np.float32), mode="F").save(tmp_path / "float255.tiff")
    for name in ("grey16.png", "float.tiff", "float255.tiff"):
        img = faces.load_image(tmp_path / name)
        assert img.shape == ref.shape and (img - ref).abs().max() < 1e-5, name
        face = faces.face_from_photo(tmp_path / name, 64, cache=False)  # and the face is found
        assert face.crop.shape == (3, 64, 64)


def test_nan_and_inf_pixels_are_refused(orl_grey, tmp_path):
    bad = orl_grey.astype(np.float32) / 255.0
    bad[10, 10] = np.nan
    Image.fromarray(bad, mode="F").save(tmp_path / "nan.tiff")
    with pytest.raises(InputError, match="NaN"):
        faces.load_image(tmp_path / "nan.tiff")
    t = torch.rand(3, 20, 20)
    t[0, 1, 1] = float("inf")
    with pytest.raises(InputError, match="lie in"):
        faces.load_image(t)
    with pytest.raises(InputError, match="NaN"):
        faces.load_image(torch.full((3, 20, 20), float("nan")))


def test_decompression_bomb_is_a_message(tmp_path):
    """A PNG whose header claims 20000 x 20000 pixels (400 M) is refused before it is decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    (tmp_path / "bomb.png").write_bytes(png)
    with pytest.raises(UnreadableImageError, match="too large"):
        faces.load_image(tmp_path / "bomb.png")


@pytest.mark.parametrize("bad", [None, 3, [1, 2, 3], torch.zeros(3, 0, 0), torch.zeros(3, 5, 5)])
def test_wrong_objects_are_messages(bad):
    with pytest.raises(InputError):
        faces.load_image(bad)


def test_face_choice_is_checked(orl_grey):
    img = faces.load_image(Image.fromarray(orl_grey))
    for bad in ("smallest", -1, 1.5, True):
        with pytest.raises(InputError, match="largest"):
            faces.face_from_photo(img, 64, face=bad, cache=False)
    with pytest.raises(NoFaceError, match="only 1 face"):
        faces.face_from_photo(img, 64, face=3, cache=False)


def test_side_by_side_joins_at_one_height_with_white_gaps():
    a, b = torch.zeros(3, 8, 8), torch.full((3, 16, 32), 0.5)
    joined = faces.side_by_side(a, b, gap=3)
    assert joined.shape == (3, 8, 8 + 3 + 16)  # b resized to a's height, its aspect ratio kept
    assert torch.equal(joined[:, :, 8:11], torch.ones(3, 8, 3))
    assert torch.allclose(joined[:, :, 11:], torch.full((3, 8, 16), 0.5), atol=1e-6)
    assert faces.side_by_side(a, b, height=16).shape == (3, 16, 16 + 2 + 32)
    with pytest.raises(InputError):
        faces.side_by_side()


@pytest.mark.parametrize("bad", [torch.ones(3, 20, 20, dtype=torch.bool), torch.rand(3, 20, 20, dtype=torch.complex64)])
def test_bool_and_complex_tensors_are_refused(bad):
    with pytest.raises(InputError, match=f"a {bad.dtype} tensor is not an image"):
        faces.load_image(bad)


def test_what_cannot_be_read_is_said_plainly(tmp_path):
    """Garbage bytes (no object address), a URL (kept as written), a named pipe nothing writes to (never a hang), a
    folder, a device, HEIC without its plugin, a name too long: each one line saying what to do."""
    import os

    cases = {b"\x00garbage": ("bytes: not a readable image", "object at"),
             "https://example.com/face.jpg": ("https://example.com/face.jpg is a URL", "no such file"),
             str(tmp_path / "pipe.jpg"): ("a named pipe (FIFO) that nothing writes to", "Use a JPEG"),
             str(tmp_path): ("is a folder", "Use a JPEG"),
             "/dev/zero": ("not a regular file", "Use a JPEG"),
             str(tmp_path / "phone.heic"): ("HEIC photos need a plugin", "Use a JPEG"),
             str(tmp_path / ("n" * 300 + ".jpg")): ("longer than the file system allows", "no such file")}
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "phone.heic").write_bytes(b"\0\0\0\x18ftypheic")
    for source, (said, not_said) in cases.items():
        with pytest.raises((InputError, UnreadableImageError)) as e:
            faces.load_image(source)
        assert said in str(e.value) and not_said not in str(e.value), str(e.value)


def test_a_named_pipe_with_a_writer_is_read(orl_grey, tmp_path):
    """What ``<(curl ...)`` gives: a pipe something writes the photo into."""
    import io
    import os
    import threading

    buf = io.BytesIO()
    Image.fromarray(orl_grey).save(buf, format="PNG")
    os.mkfifo(tmp_path / "p.png")
    w = os.open(tmp_path / "p.png", os.O_RDWR)  # the writer is there before the photo is read
    out: list = []
    reader = threading.Thread(target=lambda: out.append(faces.load_image(tmp_path / "p.png")))
    try:
        assert os.write(w, buf.getvalue()) == len(buf.getvalue())  # fits the pipe's buffer
        reader.start()
        while reader.is_alive() and _unread(w):
            reader.join(0.05)  # until the photo is read; then the pipe is closed, which ends it
    finally:
        os.close(w)
    reader.join()
    assert out and torch.equal(out[0], faces.load_image(Image.fromarray(orl_grey)))


def _unread(fd: int) -> int:
    import fcntl
    import struct
    import termios

    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
