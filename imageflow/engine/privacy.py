"""What a photo's metadata said about its owner, and what of it the output keeps.

Metadata is stripped by default, which is right for sharing, but a user cannot see what was in
the file. The render notes a **receipt** (``choices["metadata_removed"]``): the kinds of personal
or identifying metadata that were in the input and are not in the output, in words ("GPS
position", "camera serial number", ...). ``metadata keep_copyright: true`` is the middle way
imgproxy and Cloudflare offer: everything is stripped except the copyright notice and the
artist's name, so credit travels with the picture and the location does not.
"""
from __future__ import annotations

from PIL import Image

# EXIF tags (in IFD0, the Exif IFD or the GPS IFD) and what a person would call them.
EXIF_IFD, GPS_IFD = 0x8769, 0x8825
ARTIST, COPYRIGHT = 0x013B, 0x8298
KINDS = (  # (words, IFD0 tags, Exif IFD tags)
    ("camera serial number", (), (0xA431, 0xA435)),          # BodySerialNumber, LensSerialNumber
    ("owner's name", (), (0xA430,)),                          # CameraOwnerName
    ("artist", (ARTIST,), ()),
    ("copyright notice", (COPYRIGHT,), ()),
    ("date and time taken", (0x0132,), (0x9003, 0x9004)),    # DateTime, DateTimeOriginal, DateTimeDigitized
    ("camera make and model", (0x010F, 0x0110), (0xA434,)),  # Make, Model, LensModel
    ("camera maker's notes", (), (0x927C,)),                 # MakerNote: often serials, settings, places
)
GPS = "GPS position"
KEPT_BY_COPYRIGHT = frozenset({"artist", "copyright notice"})


def _exif(image: Image.Image) -> Image.Exif | None:
    try:
        exif = image.getexif()
        return exif if len(exif) else None
    except Exception:  # unreadable EXIF carries nothing we could report or keep
        return None


def found(image: Image.Image) -> list[str]:
    """The kinds of identifying metadata in ``image`` (its EXIF, XMP, IPTC and comments)."""
    kinds = []
    exif = _exif(image)
    if exif is not None:
        try:
            gps, details = exif.get_ifd(GPS_IFD), exif.get_ifd(EXIF_IFD)
        except Exception:
            gps, details = {}, {}
        if any(tag in gps for tag in (2, 4)):  # latitude, longitude
            kinds.append(GPS)
        for words, main_tags, exif_tags in KINDS:
            if any(exif.get(tag) for tag in main_tags) or any(details.get(tag) for tag in exif_tags):
                kinds.append(words)
    info = image.info
    if info.get("xmp") or info.get("XML:com.adobe.xmp"):
        kinds.append("XMP metadata (may repeat any of the above)")
    if info.get("photoshop") or info.get("iptc"):
        kinds.append("IPTC metadata")
    if info.get("comment"):
        kinds.append("comment")
    return kinds


def removed(image: Image.Image, strip: bool, keep_copyright: bool) -> list[str]:
    """What the output leaves out of what ``found`` lists: with ``strip: false`` the EXIF stays
    (XMP, IPTC and comments are never written), with ``keep_copyright`` the artist and the
    copyright notice stay."""
    kinds = found(image)
    if not strip:
        return [kind for kind in kinds if kind.startswith(("XMP", "IPTC", "comment"))]
    if keep_copyright:
        return [kind for kind in kinds if kind not in KEPT_BY_COPYRIGHT]
    return kinds


def copyright_exif(image: Image.Image) -> bytes | None:
    """EXIF holding only the input's artist and copyright notice (None when it has neither)."""
    exif = _exif(image)
    if exif is None:
        return None
    kept = Image.Exif()
    for tag in (ARTIST, COPYRIGHT):
        if exif.get(tag):
            kept[tag] = exif[tag]
    return kept.tobytes() if len(kept) else None
