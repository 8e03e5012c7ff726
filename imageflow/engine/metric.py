"""SSIMULACRA2, fast: the score of the pinned ``ssimulacra2`` package (a float64 NumPy/SciPy
port of libjxl's metric, :func:`ssimulacra2.compute_ssimulacra2`) to within about 0.001, in
float32 with OpenCV's blurs, and with the reference's half of the work done once.

A :class:`Reference` holds, per scale, what depends on the reference image alone (its XYB
pixels, their blurred mean and variance, the edge term's denominator); :meth:`Reference.score`
then does only the distorted image's half: three blurs a scale instead of five, about eight
float32 planes alive at a time instead of a dozen float64 copies. Quality ``auto`` scores
several encodes of the same pixels against one reference, so this halves its cost again.

What the port does, kept here because the score must stay the same:
- its XYB planes are the image transposed (``linear.T``), and its blur pads the first axis
  with zeros and reflects the second: in image terms, zeros beyond the left and right
  edges and a mirror above and below;
- the Gaussian is SciPy's (sigma 1.5, radius 5), the 2 x 2 downsample averages in linear
  RGB and takes the mean of the pixels there are at an odd edge;
- it stops at the first scale under 8 pixels a side, and its weights are then read on
  from the last scale computed (not skipped to the next channel's).
"""
from __future__ import annotations

import math

import cv2
import numpy as np

C2 = 0.0009
SCALES = 6
MIN_SIDE = 8

_OPSIN = np.array([[0.30, 1.0 - 0.078 - 0.30, 0.078],
                   [0.23, 1.0 - 0.078 - 0.23, 0.078],
                   [0.24342268924547819, 0.20476744424496821,
                    1.0 - 0.24342268924547819 - 0.20476744424496821]], dtype=np.float32)
_BIAS = 0.0037930732552754493
_CBRT_BIAS = float(np.cbrt(_BIAS))


def _srgb_lut() -> np.ndarray:
    v = np.arange(256, dtype=np.float64) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)


_LINEAR = _srgb_lut()


def _kernel() -> np.ndarray:
    # scipy.ndimage.gaussian_filter(sigma=1.5, truncate=3.33): radius int(3.33 * 1.5 + 0.5) = 5
    sigma, radius = 1.5, int(3.33 * 1.5 + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * x * x / (sigma * sigma))
    return (k / k.sum()).astype(np.float32)


_KERNEL = _kernel()
_ONE = np.ones(1, dtype=np.float32)

WEIGHTS = np.array([
    0.0, 0.0007376606707406586, 0.0, 0.0, 0.0007793481682867309, 0.0, 0.0, 0.0004371155730107379,
    0.0, 1.1041726426657346, 0.00066284834129271, 0.00015231632783718752, 0.0, 0.0016406437456599754,
    0.0, 1.8422455520539298, 11.441172603757666, 0.0, 0.0007989109436015163, 0.000176816438078653,
    0.0, 1.8787594979546387, 10.94906990605142, 0.0, 0.0007289346991508072, 0.9677937080626833,
    0.0, 0.00014003424285435884, 0.9981766977854967, 0.00031949755934435053, 0.0004550992113792063,
    0.0, 0.0, 0.0013648766163243398, 0.0, 0.0, 0.0, 0.0, 0.0, 7.466890328078848, 0.0,
    17.445833984131262, 0.0006235601634041466, 0.0, 0.0, 6.683678146179332, 0.00037724407979611296,
    1.027889937768264, 225.20515300849274, 0.0, 0.0, 19.213238186143016, 0.0011401524586618361,
    0.001237755635509985, 176.39317598450694, 0.0, 0.0, 24.43300999870476, 0.28520802612117757,
    0.0004485436923833408, 0.0, 0.0, 0.0, 34.77906344483772, 44.835625328877896, 0.0, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0008680556573291698, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0005313191874358747,
    0.0, 0.00016533814161379112, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0004179171803251336,
    0.0017290828234722833, 0.0, 0.0020827005846636437, 0.0, 0.0, 8.826982764996862,
    23.19243343998926, 0.0, 95.1080498811086, 0.9863978034400682, 0.9834382792465353,
    0.0012286405048278493, 171.2667255897307, 0.9807858872435379, 0.0, 0.0, 0.0,
    0.0005130064588990679, 0.0, 0.00010854057858411537])


def _linear(rgb: np.ndarray) -> np.ndarray:
    """sRGB bytes (H x W x 3 uint8) to linear float32, by table."""
    return _LINEAR[rgb]


def _xyb(linear: np.ndarray) -> np.ndarray:
    """Linear RGB to the metric's positive XYB (H x W x 3 float32)."""
    mixed = cv2.transform(linear, _OPSIN)          # the 3 x 3 opsin matrix per pixel
    mixed += _BIAS
    np.maximum(mixed, 0, out=mixed)
    np.cbrt(mixed, out=mixed)
    mixed -= _CBRT_BIAS
    m0, m1, m2 = mixed[..., 0], mixed[..., 1], mixed[..., 2]
    out = np.empty_like(mixed)
    y = 0.5 * (m0 + m1)
    out[..., 0] = (m0 - m1) * (0.5 * 14.0) + 0.42
    out[..., 2] = (m2 - y) + 0.55
    out[..., 1] = y + 0.01
    return out


def _blur(plane: np.ndarray) -> np.ndarray:
    # the port's borders: zeros left and right, a mirror (d c b a | a b c d) above and below
    across = cv2.sepFilter2D(plane, -1, _KERNEL, _ONE, borderType=cv2.BORDER_CONSTANT)
    return cv2.sepFilter2D(across, -1, _ONE, _KERNEL, borderType=cv2.BORDER_REFLECT)


def _downsample(linear: np.ndarray) -> np.ndarray:
    """2 x 2 means; at an odd edge, the mean of the pixels there are."""
    h, w = linear.shape[:2]
    h2, w2 = h // 2 * 2, w // 2 * 2
    out = np.empty(((h + 1) // 2, (w + 1) // 2, 3), dtype=np.float32)
    even = linear[:h2:2, :w2] + linear[1:h2:2, :w2]
    out[:h2 // 2, :w2 // 2] = (even[:, 0::2] + even[:, 1::2]) * 0.25
    if w2 < w:
        out[:h2 // 2, -1] = (linear[:h2:2, -1] + linear[1:h2:2, -1]) * 0.5
    if h2 < h:
        out[-1, :w2 // 2] = (linear[-1, :w2:2] + linear[-1, 1:w2:2]) * 0.5
    if h2 < h and w2 < w:
        out[-1, -1] = linear[-1, -1]
    return out


def _means(plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per channel: the mean and the 4-norm (mean of the 4th powers, to the 1/4), in float64."""
    mean = np.array(cv2.mean(plane)[:3])
    fourth = plane * plane
    np.multiply(fourth, fourth, out=fourth)
    return mean, np.array(cv2.mean(fourth)[:3]) ** 0.25


def _border(width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The columns the zero padding reaches, their blurred one (w) and 1 - w: the blur of a
    constant c there is c w, not c."""
    k = _kernel().astype(np.float64)
    k /= k.sum()
    radius = len(k) // 2
    w = np.array([k[max(0, radius - j):radius + width - j].sum() for j in range(width)])
    cols = np.flatnonzero(np.abs(1.0 - w) > 1e-12)
    w = w[cols].astype(np.float32).reshape(1, -1, 1)
    return cols, w, (1.0 - w)


class _Scale:
    """One scale of the reference. Its XYB pixels are kept less their per-channel mean ``c``:
    a variance or covariance from blurred products (E[x^2] - E[x]^2) then cancels on values
    near 0 instead of near 0.5, which float32 resolves about 25 times better (on a flat
    channel, a grey image's X and B, exactly); the zero padding's share is added back on the
    columns it reaches (:func:`_corrected`)."""
    __slots__ = ("c", "xyb", "mu", "variance", "edge", "cols", "w", "one_minus_w")

    def __init__(self, linear: np.ndarray):
        xyb = _xyb(linear)
        self.c = np.array(cv2.mean(xyb)[:3], dtype=np.float32)
        xyb -= self.c
        self.xyb = xyb
        self.cols, self.w, self.one_minus_w = _border(xyb.shape[1])
        self.mu = _blur(xyb)
        # sigma11 - mu1^2: the reference's part of the SSIM denominator
        self.variance = _blur(xyb * xyb)
        self.variance -= self.mu * self.mu
        self._corrected(self.variance, self.mu, self.mu)
        self.edge = self._edge(xyb, self.mu)

    def _corrected(self, covariance: np.ndarray, mu1: np.ndarray, mu2: np.ndarray) -> None:
        """B(x'y') - B(x')B(y') to B(xy) - B(x)B(y) for x = x' + c, y = y' + c, where B(1) = w:
        + c (1 - w)(B(x') + B(y')) + c^2 w (1 - w), on the padded columns only."""
        if self.cols.size:
            cols, c = self.cols, self.c
            covariance[:, cols] += (c * self.one_minus_w) * (mu1[:, cols] + mu2[:, cols]) \
                + c * c * self.w * self.one_minus_w

    def _edge(self, xyb: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """1 + |x - B(x)| = 1 + |x' - B(x') + c (1 - w)|."""
        edge = xyb - mu
        if self.cols.size:
            edge[:, self.cols] += self.c * self.one_minus_w
        np.abs(edge, out=edge)
        edge += 1.0
        return edge


class Reference:
    """The reference image (H x W x 3 sRGB uint8, at least 8 x 8) prepared for scoring."""

    def __init__(self, rgb: np.ndarray):
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"the metric scores H x W x 3 sRGB pixels, not an array of shape {rgb.shape}")
        self.shape = rgb.shape
        self.scales: list[_Scale] = []
        linear = _linear(rgb)
        for index in range(SCALES):
            if linear.shape[0] < MIN_SIDE or linear.shape[1] < MIN_SIDE:
                break
            self.scales.append(_Scale(linear))
            if index < SCALES - 1:
                linear = _downsample(linear)

    def score(self, rgb: np.ndarray) -> float:
        """SSIMULACRA2 of ``rgb`` (same shape, sRGB uint8) against this reference."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if rgb.shape != self.shape:
            raise ValueError(f"the image scored is {rgb.shape[1]}x{rgb.shape[0]}, "
                             f"the reference {self.shape[1]}x{self.shape[0]}")
        linear = _linear(rgb)
        terms = []
        for index, ref in enumerate(self.scales):
            xyb = _xyb(linear)
            xyb -= ref.c
            mu = _blur(xyb)
            # SSIM: 1 - (1 - (mu1 - mu2)^2) (2 (s12 - mu1 mu2) + C2) / (v1 + s22 - mu2^2)
            cross = _blur(ref.xyb * xyb)
            cross -= ref.mu * mu
            ref._corrected(cross, ref.mu, mu)
            cross *= 2.0
            cross += C2
            denominator = _blur(xyb * xyb)
            denominator -= mu * mu
            ref._corrected(denominator, mu, mu)
            # in the order that makes an unchanged image's terms equal to the bit: its score 100
            denominator += ref.variance
            denominator += C2
            cross /= denominator
            difference = ref.mu - mu
            np.multiply(difference, difference, out=difference)
            np.subtract(1.0, difference, out=difference)
            cross *= difference
            np.subtract(1.0, cross, out=cross)
            np.maximum(cross, 0.0, out=cross)
            ssim = _means(cross)
            # edges: (1 + |img2 - mu2|) / (1 + |img1 - mu1|) - 1, split into artifact and lost detail
            edge = ref._edge(xyb, mu)
            edge /= ref.edge
            edge -= 1.0
            artifact = np.maximum(edge, 0.0)
            np.negative(edge, out=edge)
            np.maximum(edge, 0.0, out=edge)
            terms.append((ssim, _means(artifact), _means(edge)))
            if index < len(self.scales) - 1:
                linear = _downsample(linear)
        total, i = 0.0, 0
        for c in range(3):
            for ssim, artifact, lost in terms:
                for n in range(2):
                    total += WEIGHTS[i] * abs(ssim[n][c])
                    total += WEIGHTS[i + 1] * abs(artifact[n][c])
                    total += WEIGHTS[i + 2] * abs(lost[n][c])
                    i += 3
        return _final(total)


def _final(ssim: float) -> float:
    ssim *= 0.9562382616834844
    ssim = 2.326765642916932 * ssim - 0.020884521182843837 * ssim * ssim + 6.248496625763138e-05 * ssim ** 3
    return 100.0 - 10.0 * math.pow(ssim, 0.6276336467831387) if ssim > 0 else 100.0


def score(reference: np.ndarray, distorted: np.ndarray) -> float:
    """SSIMULACRA2 of ``distorted`` against ``reference`` (H x W x 3 sRGB uint8 each)."""
    return Reference(reference).score(distorted)
