"""The inputs issue 26 added, over HTTP through the real processes: one job holding a file of every
new raster format (TGA, JPEG 2000, ICO/CUR, the Netpbm family, SGI, DDS, PSD/PSB), an SVG, a three-page
PDF whose second page the `page` operation chooses, and a photo with a GPS position whose receipt says
it was removed. Each image succeeds and its output shows the picture the file holds, the right way up."""
from __future__ import annotations

import io

import requests
from PIL import Image

from tests.e2e.conftest import wait_for_job
from tests.format_samples import samples

RED, BLUE = (230, 40, 30), (40, 90, 200)
SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" width="48" height="32">'
       b'<rect width="24" height="16" fill="rgb(230,40,30)"/><rect x="24" width="24" height="32" fill="rgb(40,90,200)"/>'
       b'<rect y="16" width="24" height="16" fill="rgb(40,90,200)"/></svg>')


def three_page_pdf() -> bytes:
    pages = [Image.new("RGB", (200, 100), color) for color in ((0, 255, 0), RED, (0, 0, 0))]
    out = io.BytesIO()
    pages[0].save(out, "PDF", resolution=72, save_all=True, append_images=pages[1:])
    return out.getvalue()


def photo_with_gps() -> bytes:
    exif = Image.Exif()
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (48.0, 51.0, 0.0), "E", (2.0, 17.0, 0.0)
    exif.get_ifd(0x8769)[0xA431] = "SN-0042"
    out = io.BytesIO()
    Image.new("RGB", (48, 32), BLUE).save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def close(a, b, tolerance=40) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b))


def test_every_new_input_format_is_processed_end_to_end(stack):
    files = {f"{name}.{name.split('-')[0]}": data for name, (data, _picture, _kind) in samples().items()}
    files.update({"logo.svg": SVG, "catalogue.pdf": three_page_pdf(), "holiday.jpg": photo_with_gps()})
    response = requests.post(
        f"{stack.base_url}/api/v1/jobs", timeout=60,
        files=[("files", (name, data, "application/octet-stream")) for name, data in files.items()],
        data={"operations": '[{"op": "page", "number": 2}, {"op": "format", "format": "png"}]'})
    assert response.status_code == 202, response.text
    assert response.json()["rejected"] == []
    job = wait_for_job(stack.base_url, response.json()["job_id"], timeout=240)
    images = {image["filename"]: image for image in job["images"]}
    failed = {name: image["error"] for name, image in images.items() if image["status"] != "succeeded"}
    assert failed == {} and len(images) == len(files), failed
    pictures = {f"{name}.{name.split('-')[0]}": picture for name, (_data, picture, _kind) in samples().items()}
    for name, image in images.items():
        [output] = image["outputs"]
        with Image.open(io.BytesIO(requests.get(output["url"], timeout=30).content)) as out:
            assert out.format == "PNG", name
            rgb = out.convert("RGB")
            if name in pictures:  # the picture the file holds, corner by corner (a turn or a flip shows)
                expected = pictures[name].convert("RGB")
                assert rgb.size == expected.size, name
                width, height = rgb.size
                for point in ((0, 0), (width - 1, 0), (0, height - 1), (width - 1, height - 1)):
                    assert close(rgb.getpixel(point), expected.getpixel(point)), (name, point)
            elif name == "logo.svg":
                assert close(rgb.getpixel((2, 2)), RED) and close(rgb.getpixel((45, 2)), BLUE), name
            elif name == "catalogue.pdf":
                assert image["choices"]["pdf_page"] == "2 of 3"
                assert close(rgb.getpixel((rgb.width // 2, rgb.height // 2)), RED), "page 2 is the red one"
    receipt = images["holiday.jpg"]["choices"]["metadata_removed"]
    assert "GPS position" in receipt and "camera serial number" in receipt
