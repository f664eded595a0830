"""Procedural objects for the synthetic datasets: random shape specs, masks, outlines.

An object is described by an `ObjectSpec` in resolution-free coordinates (the image spans
[-1, 1] on both axes, y pointing down), so the same spec renders the same object at any
resolution. Masks are computed with torch ops on the grid of pixel centres (no drawing
library), and the outline is derived from the mask, so the edge map is exactly the
object's inner boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

FAMILIES: tuple[str, ...] = ("ellipse", "rectangle", "rounded_rectangle", "triangle", "polygon", "star")
"""Shape families, drawn with equal probability."""

# Objects are kept this far (in [-1, 1] units) from the image border, so the outline is
# always closed and inside the image, even at 32 px.
_BORDER_MARGIN = 0.12
RADIUS_RANGE = (0.45, 0.78)


@dataclass(frozen=True)
class ObjectSpec:
    """One object, in image coordinates where the image spans [-1, 1] (x right, y down).

    `half_extents` are the ellipse semi-axes or rectangle half sides; polygons and stars
    use `radius` (circumradius), `vertices` and `inner_ratio` (star inner radius / radius).
    """

    family: str
    center: tuple[float, float]
    radius: float
    half_extents: tuple[float, float]
    rotation: float
    vertices: int
    inner_ratio: float


def draw_object(generator: torch.Generator) -> ObjectSpec:
    """Draw a random object. Always consumes the same number of random draws, so what a
    caller draws afterwards from `generator` does not depend on the shape family."""
    u = torch.rand(8, generator=generator, dtype=torch.float64).tolist()
    family = FAMILIES[min(int(u[0] * len(FAMILIES)), len(FAMILIES) - 1)]
    radius = RADIUS_RANGE[0] + u[1] * (RADIUS_RANGE[1] - RADIUS_RANGE[0])
    reach = 1.0 - _BORDER_MARGIN - radius  # the centre may move this far from the middle
    center = ((2.0 * u[2] - 1.0) * reach, (2.0 * u[3] - 1.0) * reach)
    rotation = u[4] * 2.0 * math.pi
    if family == "ellipse":
        half_extents = (radius, radius * (0.55 + 0.45 * u[5]))
    elif family in ("rectangle", "rounded_rectangle"):
        diagonal_angle = math.radians(30.0 + 30.0 * u[5])  # radius is the half diagonal
        half_extents = (radius * math.cos(diagonal_angle), radius * math.sin(diagonal_angle))
    else:
        half_extents = (radius, radius)
    vertices = {"triangle": 3, "polygon": 5 + int(u[6] * 2), "star": 4 + int(u[6] * 3)}.get(family, 0)
    inner_ratio = 0.45 + 0.15 * u[7] if family == "star" else 1.0
    return ObjectSpec(family, center, radius, half_extents, rotation, vertices, inner_ratio)


def pixel_grid(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) coordinates of the pixel centres, each (H, W), in [-1, 1]."""
    coords = (torch.arange(image_size, dtype=torch.float32) + 0.5) / image_size * 2.0 - 1.0
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    return x, y


def local_coordinates(spec: ObjectSpec, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel centres in the object's own frame (centred, rotation undone)."""
    x, y = pixel_grid(image_size)
    dx, dy = x - spec.center[0], y - spec.center[1]
    cos, sin = math.cos(spec.rotation), math.sin(spec.rotation)
    return cos * dx + sin * dy, -sin * dx + cos * dy


def render_mask(spec: ObjectSpec, image_size: int) -> torch.Tensor:
    """Binary object mask, float (1, H, W) with values in {0, 1}."""
    x, y = local_coordinates(spec, image_size)
    a, b = spec.half_extents
    if spec.family == "ellipse":
        inside = (x / a) ** 2 + (y / b) ** 2 <= 1.0
    elif spec.family == "rectangle":
        inside = (x.abs() <= a) & (y.abs() <= b)
    elif spec.family == "rounded_rectangle":
        corner = 0.35 * min(a, b)
        qx, qy = x.abs() - a + corner, y.abs() - b + corner
        outside = torch.hypot(qx.clamp(min=0), qy.clamp(min=0))
        inside = outside + torch.maximum(qx, qy).clamp(max=0) <= corner
    else:
        inside = _inside_star_polygon(x, y, spec)
    return inside.to(torch.float32).unsqueeze(0)


def _inside_star_polygon(x: torch.Tensor, y: torch.Tensor, spec: ObjectSpec) -> torch.Tensor:
    """Inside test for a polygon that is star-shaped around the origin: regular polygons
    (every vertex at `radius`) and stars (alternating `radius` and `inner_ratio * radius`).
    The sector a pixel's angle falls in picks the edge; the pixel is inside when it lies on
    the origin's side of that edge."""
    is_star = spec.family == "star"
    corners = 2 * spec.vertices if is_star else spec.vertices
    angles = torch.arange(corners + 1, dtype=torch.float32) * (2.0 * math.pi / corners)
    radii = torch.full((corners + 1,), spec.radius)
    if is_star:
        radii[1::2] = spec.radius * spec.inner_ratio
    vx, vy = radii * torch.cos(angles), radii * torch.sin(angles)
    theta = torch.atan2(y, x).remainder(2.0 * math.pi)
    sector = (theta / (2.0 * math.pi / corners)).long().clamp(max=corners - 1)
    x0, y0, x1, y1 = vx[sector], vy[sector], vx[sector + 1], vy[sector + 1]
    ex, ey = x1 - x0, y1 - y0
    point_side = ex * (y - y0) - ey * (x - x0)
    origin_side = ex * (-y0) - ey * (-x0)
    return point_side * origin_side >= 0


def outline(mask: torch.Tensor, width: int = 1) -> torch.Tensor:
    """Inner boundary of a (1, H, W) or (N, 1, H, W) binary mask: the mask pixels with a
    background pixel within `width` pixels (8-neighbourhood, Chebyshev distance)."""
    kernel = 2 * width + 1
    near_background = F.max_pool2d(1.0 - mask, kernel, stride=1, padding=width)
    return mask * near_background


def outline_width(image_size: int) -> int:
    """Line width in pixels: 1 px up to 191 px images, thicker for larger ones so edges
    keep about the same relative weight."""
    return max(1, round(image_size / 128))
