"""Render the base images of the shapes dataset with Blender (the PyPI `bpy` wheel), headless.

One 128x128 greyscale image per (shape, azimuth, tilt): the "rendered" ground-truth factors.
Zoom and translation are NOT rendered; dataset.py applies them on the fly (like the
position/scale factors of dSprites, Matthey et al. 2017; and the spatial-broadcast setting of
Watters et al. 2019).

    python blender/render_shapes.py --out data/shapes.npz            # time: README.md, step 1
    blender -b -P blender/render_shapes.py -- --out data/shapes.npz  # same, inside Blender

Scene (all lengths in Blender units):
- each mesh is centred on its bounding-box centre and scaled so that its farthest vertex is at
  distance 1 (bounding sphere of radius 1 about the origin), so every rotation stays inside it;
- orthographic camera at elevation CAMERA_ELEVATION, looking at the origin along +y, with
  ortho_scale = 1 / DISC_FRACTION = 2.5: the bounding sphere projects to a disc of radius
  0.4 x image width centred on the image centre, whatever the pose. dataset.py relies on this;
- orientation R = Rz(azimuth) . Rx(tilt): the object is first tilted about the world x axis
  (top toward the camera), then turned about the world vertical. Because the tilt comes first,
  the axis of the cylinder, cone and torus leans in a direction that turns with the azimuth, so
  their images change with azimuth. The cube looks the same every 90 degrees of azimuth only for
  tilt 0 (not in the default grid);
- the sphere is a "cut sphere": a UV sphere with the cap beyond the plane
  p . SPHERE_CUT_AXIS = SPHERE_CUT_DEPTH removed and the hole closed by a flat disc (before the
  rescaling above). A whole sphere would look the same in every pose; the cut axis is generic
  (no rotation of the pose grid maps it onto itself), so every (azimuth, tilt) turns the flat
  face to a different direction, visible in its shading and silhouette;
- azimuth is circular: num_azimuths values linspace over [0, 360), so with 16 of them 0 and
  337.5 degrees are neighbours, 22.5 degrees apart like any other pair of neighbours (metrics
  and models that treat azimuth as an ordered index see them at the two ends of the range).
  Tilt is not circular. tests/test_render.py checks that every pair of values of every factor,
  for every shape, gives clearly different images (well above the render noise);
- a sun from the upper left front plus a dim uniform world light, so every surface is grey
  (never 0) and faces differ in shade; a black, transparent film: background pixels are exactly 0.

Output npz (written to a temporary file in the same directory, then os.replace). An existing
--out is reused when it holds this config's render and re-rendered when it holds another render
of this script; any other file (not an npz whose meta has a config_hash) is left untouched and the
command fails (exit 2) unless --force is given:
    images        uint8 (N, R, R, 1)       R = resolution, row 0 = top of the image
    factors       int64 (N, 3)             indices into the values below, row-major over
                                           (shape, azimuth, tilt), shape slowest
    factor_names  str   (3,)               ["shape", "azimuth", "tilt"]
    values_shape  str   (n_shapes,)        shape names
    values_azimuth float64 (num_azimuths,) degrees, linspace over [0, 360)
    values_tilt   float64 (n_tilts,)       degrees
    meta          str   ()                 JSON: bpy version, engine, samples, seed, resolution,
                                           render settings, scene constants, config_hash
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import sys
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass

import numpy as np

SHAPES = ("cube", "sphere", "cylinder", "cone", "torus", "monkey")
FACTOR_NAMES = ("shape", "azimuth", "tilt")
DISC_FRACTION = 0.4  # bounding-sphere radius / image width in the base render
CAMERA_ELEVATION = 30.0  # degrees above the horizon
SUN_FROM = (-1.0, -1.5, 2.0)  # direction the sun light comes from (upper left, in front)
SUN_ENERGY = 2.5
AMBIENT = 0.25  # world background strength: the only light on faces the sun misses
ALBEDO = 0.8
# The sphere alone would look the same in every pose, so its azimuth and tilt labels could not be
# read from the pixels (issue 11). It is rendered with a flat cut: the cap beyond the plane
# {p : p . SPHERE_CUT_AXIS = SPHERE_CUT_DEPTH} is removed (a disc of radius 0.92 before rescaling).
# The axis is generic (no symmetry of the pose grid maps it onto itself), so every (azimuth, tilt)
# turns the flat face to a different direction, which shows in shading and silhouette.
SPHERE_CUT_AXIS = (0.48, -0.36, 0.8)  # body frame, unit length
SPHERE_CUT_DEPTH = 0.4  # distance of the cut plane from the centre (radius 1)
SCENE_VERSION = 2  # bump when the scene code changes pixels: it invalidates cached renders
BPY_PIN = "5.0.1"
APT_LIBS = (
    "libx11-6 libxrender1 libxfixes3 libxi6 libxkbcommon0 libsm6 libice6 libxext6 libgl1 libegl1"
)


@dataclass
class RenderConfig:
    shapes: tuple[str, ...] = SHAPES
    num_azimuths: int = 16  # evenly over [0, 360)
    tilts: tuple[float, ...] = (15.0, 35.0, 55.0)  # degrees, top toward the camera
    resolution: int = 128
    engine: str = "CYCLES"  # Cycles on the CPU (EEVEE took ~16 s/img headless on 2 cores: unused)
    samples: int = 16
    seed: int = 0
    workers: int = 1  # processes (spawn); does not change pixels, so not in the hash

    def validate(self) -> None:
        self.shapes = tuple(self.shapes)
        self.tilts = tuple(float(t) for t in self.tilts)
        bad = [s for s in self.shapes if s not in SHAPES]
        if bad:
            raise ValueError(f"unknown shape(s) {bad}: valid shapes are {list(SHAPES)}")
        if not self.shapes or len(set(self.shapes)) != len(self.shapes):
            raise ValueError(f"shapes must be a non-empty list without repeats, got {self.shapes}")
        if len(set(self.tilts)) != len(self.tilts) or not self.tilts:
            raise ValueError(f"tilts must be a non-empty list without repeats, got {self.tilts}")
        for name in ("num_azimuths", "resolution", "samples", "workers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.engine != "CYCLES":
            raise ValueError(f"engine must be 'CYCLES' (got {self.engine!r})")

    def azimuths(self) -> np.ndarray:
        return np.arange(self.num_azimuths) * (360.0 / self.num_azimuths)  # degrees

    def views(self) -> list[tuple[int, int, int]]:
        """All (shape, azimuth, tilt) index triples, row-major, shape slowest."""
        n_s, n_a, n_t = len(self.shapes), self.num_azimuths, len(self.tilts)
        return [(s, a, t) for s in range(n_s) for a in range(n_a) for t in range(n_t)]

    def pixel_key(self) -> dict:
        """Everything that determines the pixels (not `workers`)."""
        d = dataclasses.asdict(self)
        d.pop("workers")
        d["shapes"], d["tilts"] = list(self.shapes), list(self.tilts)
        d["scene"] = dict(
            version=SCENE_VERSION,
            sphere_cut_axis=SPHERE_CUT_AXIS,
            sphere_cut_depth=SPHERE_CUT_DEPTH,
            disc_fraction=DISC_FRACTION,
            camera_elevation=CAMERA_ELEVATION,
            sun_from=SUN_FROM,
            sun_energy=SUN_ENERGY,
            ambient=AMBIENT,
            albedo=ALBEDO,
        )
        d["bpy_version"] = bpy_version()
        return d

    def config_hash(self) -> str:
        blob = json.dumps(self.pixel_key(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def bpy_version() -> str | None:
    """The installed bpy version, read without importing it (importing takes ~0.5 s)."""
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover
        return None
    try:
        return version("bpy")
    except PackageNotFoundError:
        if "bpy" in sys.modules and sys.modules["bpy"] is not None:  # inside the Blender binary
            return sys.modules["bpy"].app.version_string.split()[0]
        return None


def import_bpy():
    try:
        import bpy  # noqa: PLC0415 (lazy: importing this module must stay cheap)
    except ImportError as e:
        raise ImportError(
            f"bpy (Blender as a Python module) is not importable ({e}). Install it with "
            f"`make setup`, or `.venv/bin/pip install bpy=={BPY_PIN}` (Python 3.11 only); on "
            f"Debian it also needs `sudo apt-get install {APT_LIBS}`."
        ) from e
    return bpy


# ----------------------------------------------------------------------------- the scene


def _add_mesh(bpy, shape: str):
    ops = bpy.ops.mesh
    make = {
        "cube": lambda: ops.primitive_cube_add(),
        "sphere": lambda: ops.primitive_uv_sphere_add(segments=64, ring_count=32),
        "cylinder": lambda: ops.primitive_cylinder_add(vertices=64),
        "cone": lambda: ops.primitive_cone_add(vertices=64),
        "torus": lambda: ops.primitive_torus_add(major_segments=64, minor_segments=24),
        "monkey": lambda: ops.primitive_monkey_add(),
    }
    make[shape]()
    obj = bpy.context.active_object
    obj.name = shape
    if shape == "sphere":
        _cut_cap(obj.data, SPHERE_CUT_AXIS, SPHERE_CUT_DEPTH)
    # centre on the bounding-box centre, then scale so the farthest vertex is at distance 1
    co = np.empty(3 * len(obj.data.vertices), np.float64)
    obj.data.vertices.foreach_get("co", co)
    co = co.reshape(-1, 3)  # (V, 3)
    centre = (co.min(0) + co.max(0)) / 2
    co = (co - centre) / np.linalg.norm(co - centre, axis=1).max()
    obj.data.vertices.foreach_set("co", co.ravel())
    obj.data.update()
    if shape in ("torus", "monkey"):
        bpy.ops.object.shade_smooth()
    elif shape in ("sphere", "cylinder", "cone"):
        bpy.ops.object.shade_smooth_by_angle()  # smooth sides, sharp rims (the sphere's cut)
    obj.rotation_mode = "XYZ"  # X first, then Z: R = Rz(azimuth) . Rx(tilt)
    return obj


def _cut_cap(mesh, axis, depth: float) -> None:
    """Remove the part of ``mesh`` beyond the plane p . axis = depth and close the hole flat."""
    import bmesh  # noqa: PLC0415 (ships with bpy)

    n = np.asarray(axis, np.float64)
    n /= np.linalg.norm(n)
    bm = bmesh.new()
    bm.from_mesh(mesh)
    geom = bm.verts[:] + bm.edges[:] + bm.faces[:]
    bmesh.ops.bisect_plane(
        bm, geom=geom, plane_co=tuple(depth * n), plane_no=tuple(n), clear_outer=True
    )
    bmesh.ops.holes_fill(bm, edges=[e for e in bm.edges if e.is_boundary], sides=0)
    bm.to_mesh(mesh)
    bm.free()
    mesh.update()


def build_scene(cfg: RenderConfig, threads: int = 0):
    """Reset Blender and build camera, lights, material and one hidden object per shape."""
    bpy = import_bpy()
    from mathutils import Vector  # noqa: PLC0415 (ships with bpy)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    sc = bpy.context.scene
    r = sc.render
    r.engine = "CYCLES"
    sc.cycles.device = "CPU"
    sc.cycles.samples = cfg.samples
    sc.cycles.use_denoising = False  # 16 samples are clean enough at 128 px; OIDN costs 3x
    sc.cycles.use_adaptive_sampling = False  # same work per pixel, whatever the noise
    r.resolution_x = r.resolution_y = cfg.resolution
    r.resolution_percentage = 100
    r.film_transparent = True  # background alpha 0, premultiplied colour 0
    r.dither_intensity = 0.0
    r.threads_mode = "FIXED" if threads else "AUTO"
    if threads:
        r.threads = threads
    sc.view_settings.view_transform = "Standard"
    sc.view_settings.look = "None"
    r.image_settings.file_format = "PNG"
    r.image_settings.color_mode = "BW"  # luminance of the colour composited on black
    r.image_settings.color_depth = "8"

    cam = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    cam.data.type = "ORTHO"
    cam.data.ortho_scale = 1.0 / DISC_FRACTION  # view width 2.5: a unit sphere -> 0.4 W disc
    e = math.radians(CAMERA_ELEVATION)
    cam.location = (0.0, -10 * math.cos(e), 10 * math.sin(e))
    cam.rotation_euler = (math.pi / 2 - e, 0.0, 0.0)  # looks at the origin along +y, tipped down
    sc.collection.objects.link(cam)
    sc.camera = cam

    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy = SUN_ENERGY
    sun.rotation_mode = "QUATERNION"
    sun.rotation_quaternion = Vector(SUN_FROM).normalized().to_track_quat("Z", "Y")
    sc.collection.objects.link(sun)

    world = bpy.data.worlds.new("world")
    if world.node_tree is None:  # bpy < 5 (node trees are always on in 5.x)
        world.use_nodes = True
    bg = world.node_tree.nodes["Background"]
    bg.inputs[0].default_value = (1.0, 1.0, 1.0, 1.0)
    bg.inputs[1].default_value = AMBIENT
    sc.world = world

    mat = bpy.data.materials.new("grey")
    if mat.node_tree is None:
        mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (ALBEDO, ALBEDO, ALBEDO, 1.0)
    bsdf.inputs["Roughness"].default_value = 0.6

    objs = {}
    for shape in cfg.shapes:
        obj = _add_mesh(bpy, shape)
        obj.data.materials.append(mat)
        obj.hide_render = True
        objs[shape] = obj
    return bpy, objs


@contextlib.contextmanager
def _quiet_stdout():
    """Blender prints 'Saved: ...' on fd 1 for every render; keep the progress bar readable."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def view_seed(cfg: RenderConfig, shape: str, az: float, tilt: float) -> int:
    """Cycles seed of one view: fixed by the view itself, so a subset config renders the same
    pixels as the full one, and independent noise across views."""
    return zlib.crc32(f"{cfg.seed}:{shape}:{az:.6f}:{tilt:.6f}".encode()) & 0x7FFFFFFF


def render_view(bpy, objs, cfg: RenderConfig, shape: str, az: float, tilt: float) -> np.ndarray:
    """Render one view; returns uint8 (R, R), row 0 = top."""
    sc = bpy.context.scene
    for name, obj in objs.items():
        obj.hide_render = name != shape
    objs[shape].rotation_euler = (math.radians(tilt), 0.0, math.radians(az))
    sc.cycles.seed = view_seed(cfg, shape, az, tilt)
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    png = os.path.join(shm, f"render_shapes_{os.getpid()}_{uuid.uuid4().hex}.png")
    sc.render.filepath = png
    try:
        with _quiet_stdout():
            bpy.ops.render.render(write_still=True)
        img = bpy.data.images.load(png, check_existing=False)
        try:
            px = np.empty(len(img.pixels), np.float32)  # RGBA floats = bytes / 255
            img.pixels.foreach_get(px)
        finally:
            bpy.data.images.remove(img)
    finally:
        if os.path.exists(png):
            os.remove(png)
    r = cfg.resolution
    grey = px.reshape(r, r, 4)[::-1, :, 0]  # Blender stores rows bottom-up
    return np.round(grey * 255.0).astype(np.uint8)


# ----------------------------------------------------------------------------- workers

_WORKER: dict = {}


def _strip_bpy_paths() -> None:
    """bpy appends its scripts/ folders to sys.path when imported; a spawned child inherits the
    parent's sys.path and hangs/errors importing bpy again with them present (measured with
    bpy 5.0.1; the children are spawned, since a fork after `import bpy` hangs as well)."""
    sys.path[:] = [
        p
        for p in sys.path
        if not (
            f"{os.sep}scripts" in p
            and (f"{os.sep}bpy{os.sep}" in p or f"{os.sep}blender{os.sep}" in p)
        )
    ]


def _worker_init(cfg_dict: dict, threads: int) -> None:
    _strip_bpy_paths()
    cfg = RenderConfig(**cfg_dict)
    bpy, objs = build_scene(cfg, threads=threads)
    _WORKER.update(cfg=cfg, bpy=bpy, objs=objs)


def _worker_render(jobs: list[tuple[int, str, float, float]]) -> list[tuple[int, np.ndarray]]:
    w = _WORKER
    return [(i, render_view(w["bpy"], w["objs"], w["cfg"], s, a, t)) for i, s, a, t in jobs]


def _progress(total: int, enabled: bool):
    if not enabled:
        return contextlib.nullcontext(None)
    try:
        from tqdm import tqdm  # noqa: PLC0415 (absent inside the Blender binary)
    except ImportError:
        return contextlib.nullcontext(None)
    return tqdm(total=total, desc="render", unit="img")


def _inside_blender_binary() -> bool:
    bpy = sys.modules.get("bpy")
    return bool(bpy is not None and getattr(bpy.app, "binary_path", ""))


def render_images(cfg: RenderConfig, progress: bool = True, timing: dict | None = None):
    """Render every view of `cfg`; returns uint8 (N, R, R, 1) in `cfg.views()` order.
    `timing`, if given, receives setup_seconds (bpy import + scene; None with workers > 1, where
    the children's start-up overlaps rendering) and render_seconds (the rest)."""
    t0 = time.perf_counter()
    setup = None
    views = cfg.views()
    az, tilts = cfg.azimuths(), cfg.tilts
    jobs = [(i, cfg.shapes[s], float(az[a]), tilts[t]) for i, (s, a, t) in enumerate(views)]
    out = np.zeros((len(jobs), cfg.resolution, cfg.resolution, 1), np.uint8)
    workers = min(cfg.workers, len(jobs))
    if workers > 1 and _inside_blender_binary():
        print("render_shapes: --workers is ignored inside the Blender binary", file=sys.stderr)
        workers = 1
    with _progress(len(jobs), progress) as bar:
        if workers == 1:
            bpy, objs = build_scene(cfg)
            setup = time.perf_counter() - t0
            for i, shape, a, t in jobs:
                out[i, ..., 0] = render_view(bpy, objs, cfg, shape, a, t)
                if bar is not None:
                    bar.update(1)
        else:
            import multiprocessing as mp  # noqa: PLC0415

            threads = max(1, (os.cpu_count() or 1) // workers)
            cfg_dict = dataclasses.asdict(cfg)
            chunks = [jobs[k : k + 4] for k in range(0, len(jobs), 4)]
            ctx = mp.get_context("spawn")  # fork after `import bpy` hangs
            with ctx.Pool(workers, _worker_init, (cfg_dict, threads)) as pool:
                for done in pool.imap_unordered(_worker_render, chunks):
                    for i, img in done:
                        out[i, ..., 0] = img
                    if bar is not None:
                        bar.update(len(done))
    if timing is not None:
        timing.update(setup_seconds=setup, render_seconds=time.perf_counter() - t0 - (setup or 0))
    return out


# ----------------------------------------------------------------------------- the file


def _check_cached(cfg: RenderConfig, out: str) -> str | None:
    """None if `out` holds a complete render of `cfg`, else the reason why not."""
    try:
        with np.load(out, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            images, factors = z["images"], z["factors"]
    except Exception as e:  # any unreadable file is simply re-rendered
        return f"unreadable ({type(e).__name__}: {e})"
    if meta.get("config_hash") != cfg.config_hash():
        return "config changed"
    n, r = len(cfg.views()), cfg.resolution
    if images.shape != (n, r, r, 1) or images.dtype != np.uint8 or factors.shape != (n, 3):
        return "unexpected array shapes"
    return None


class NotADatasetError(ValueError):
    """`--out` names an existing file that this script did not write: it is not overwritten."""


def dataset_meta(path: str) -> dict | None:
    """The meta JSON of a render npz written by this script (it holds a ``config_hash``), read
    from the zip directory and the meta member alone, so a render whose image arrays are damaged
    is still recognised. None for anything else: not a zip (a README, a truncated file), an npz
    without a render ``meta`` (an export of dataset.py, someone's arrays)."""
    import zipfile  # noqa: PLC0415

    try:
        with zipfile.ZipFile(path) as zf, zf.open("meta.npy") as f:
            meta = json.loads(str(np.lib.format.read_array(f, allow_pickle=False)))
    except Exception:  # noqa: BLE001  every failure means "not recognisably ours"
        return None
    return meta if isinstance(meta, dict) and "config_hash" in meta else None


def overwrite_refusal(out: str) -> str | None:
    """Why rendering to `out` without --force would be refused; None when `out` is absent or a
    render written by this script (which is re-rendered or reused, never lost unasked)."""
    if not os.path.lexists(out):
        return None
    if os.path.isdir(out):
        return f"--out {out} is a directory; name the npz file to write, e.g. --out data/shapes.npz"
    if dataset_meta(out) is not None:
        return None
    return (
        f"--out {out} exists and is not a dataset written by render_shapes.py (not an npz with a "
        f"render 'meta'), so it is left as it is. Render to another file, e.g. --out "
        f"{fresh_render_path(out)}, or pass --force to overwrite {out}."
    )


def fresh_render_path(taken: str) -> str:
    """A path for a new render that does not exist yet: data/shapes.npz, else data/shapes_2.npz…"""
    for i in range(1, 1000):
        name = os.path.join("data", "shapes.npz" if i == 1 else f"shapes_{i}.npz")
        if not os.path.lexists(name) and name != taken:
            return name
    return os.path.join("data", f"shapes_{uuid.uuid4().hex[:8]}.npz")


def _save_atomic(out: str, arrays: dict) -> None:
    """np.savez to a temporary file (named with our pid) in out's directory, fsync, rename; the
    temporary files of killed renders (dead pids) are removed first (rundir.atomic_path)."""
    _repo_on_path()
    from sbd_vae import rundir

    with rundir.atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _repo_on_path() -> None:
    """The repository root (parent of blender/) on sys.path: as a script or inside Blender
    (`blender -b -P`) sys.path[0] is blender/, not the root that holds the sbd_vae package."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if root not in sys.path:
        sys.path.append(root)


def _remove_dead_view_pngs(directory: str) -> None:
    """View PNGs (render_shapes_<pid>_*.png) of renders killed mid-view."""
    _repo_on_path()
    from sbd_vae import rundir

    for name in os.listdir(directory):
        parts = name.split("_")
        if name.startswith("render_shapes_") and len(parts) > 3 and parts[2].isdigit():
            pid = int(parts[2])
            if pid != os.getpid() and not rundir.pid_alive(pid):
                with contextlib.suppress(OSError):
                    os.remove(os.path.join(directory, name))


def render_dataset(
    cfg: RenderConfig, out: str = "data/shapes.npz", progress: bool = True, force: bool = False
) -> str:
    """Render `cfg` to the npz `out` (see the module docstring), or reuse `out` when it already
    holds a render with the same config hash. Returns `out`.

    An existing `out` that is not a render written here (``dataset_meta``: an npz whose meta has
    a config_hash) is never overwritten without ``force``: NotADatasetError, the file untouched.
    A render of ours whose arrays are damaged is re-rendered."""
    cfg.validate()
    refusal = overwrite_refusal(out)
    if refusal is not None and (not force or os.path.isdir(out)):
        raise NotADatasetError(refusal)
    if bpy_version() is None:
        import_bpy()  # raises the install hint
    if os.path.exists(out) and not force:
        why = _check_cached(cfg, out)
        if why is None:
            print(f"render_shapes: reusing {out} (config hash {cfg.config_hash()})")
            return out
        print(f"render_shapes: re-rendering {out}: {why}")
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
    _remove_dead_view_pngs(shm)  # left by a render killed mid-view
    t0, timing = time.perf_counter(), {}
    images = render_images(cfg, progress=progress, timing=timing)
    seconds = time.perf_counter() - t0
    views = np.asarray(cfg.views(), np.int64).reshape(-1, 3)
    meta = dict(
        config_hash=cfg.config_hash(),
        config=cfg.pixel_key(),
        bpy_version=bpy_version(),
        engine=cfg.engine,
        device="CPU",
        samples=cfg.samples,
        seed=cfg.seed,
        resolution=cfg.resolution,
        render_settings=dict(
            view_transform="Standard",
            look="None",
            dither_intensity=0.0,
            film_transparent=True,
            color_mode="BW",
            denoising=False,
            adaptive_sampling=False,
            camera="ORTHO",
            ortho_scale=1.0 / DISC_FRACTION,
            camera_elevation_deg=CAMERA_ELEVATION,
            rotation="R = Rz(azimuth) . Rx(tilt)",
            seed_per_view="crc32(f'{seed}:{shape}:{azimuth:.6f}:{tilt:.6f}')",
        ),
        disc_fraction=DISC_FRACTION,
        total_seconds=round(seconds, 3),
        setup_seconds=None
        if timing["setup_seconds"] is None
        else round(timing["setup_seconds"], 3),
        render_seconds=round(timing["render_seconds"], 3),
        seconds_per_image=round(timing["render_seconds"] / len(images), 4),
        workers=cfg.workers,
    )
    _save_atomic(
        out,
        dict(
            images=images,
            factors=views,
            factor_names=np.array(FACTOR_NAMES),
            values_shape=np.array(cfg.shapes),
            values_azimuth=cfg.azimuths(),
            values_tilt=np.array(cfg.tilts, np.float64),
            meta=np.array(json.dumps(meta)),
        ),
    )
    print(f"render_shapes: wrote {out}: {len(images)} images in {seconds:.1f} s", flush=True)
    return out


def main(argv: list[str] | None = None) -> str:
    if argv is None:  # `blender -b -P render_shapes.py -- ARGS` passes Blender's own args first
        if "--" in sys.argv:
            argv = sys.argv[sys.argv.index("--") + 1 :]
        else:
            argv = [] if _inside_blender_binary() else sys.argv[1:]
    d = RenderConfig()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="data/shapes.npz", help="the npz [default data/shapes.npz]")
    p.add_argument(
        "--shapes",
        nargs="+",
        default=list(d.shapes),
        help=f"shapes to render, from {' '.join(SHAPES)} [default all]",
    )
    p.add_argument(
        "--num_azimuths",
        type=int,
        default=d.num_azimuths,
        help=f"azimuths, evenly over 0-360 degrees [default {d.num_azimuths}]",
    )
    p.add_argument(
        "--tilts",
        type=float,
        nargs="+",
        default=list(d.tilts),
        help=f"camera tilts, degrees [default {' '.join(f'{t:g}' for t in d.tilts)}]",
    )
    p.add_argument(
        "--resolution",
        type=int,
        default=d.resolution,
        help=f"side of the renders, pixels [default {d.resolution}]",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=d.samples,
        help=f"Cycles samples per pixel [default {d.samples}]",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help=f"seed of Cycles' noise (mixed with each view) [default {d.seed}]",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        help=f"render processes; the pixels do not depend on it [default {d.workers}]",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="re-render even if the cache matches; overwrite an --out that is not a render",
    )
    p.add_argument("--no_progress", action="store_true", help="no progress bar [off]")
    a = p.parse_args(argv)
    cfg = RenderConfig(
        shapes=tuple(a.shapes),
        num_azimuths=a.num_azimuths,
        tilts=tuple(a.tilts),
        resolution=a.resolution,
        samples=a.samples,
        seed=a.seed,
        workers=a.workers,
    )
    try:
        return render_dataset(cfg, a.out, progress=not a.no_progress, force=a.force)
    except (ValueError, ImportError) as e:
        p.exit(2, f"render_shapes: error: {e}\n")


if __name__ == "__main__":
    main()
