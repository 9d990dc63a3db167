# Two commands do everything on a fresh machine: `make demo` and `make test` (see README.md).
PY      := .venv/bin/python
DATA    := data/shapes.npz
DEMO    := runs/demo
SWEEP   ?= results/study
export PYTHONHASHSEED := 0
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup data demo study study_wide seed_128 dsprites_study test bench stress figures explorer_png lint format clean

setup:
	@bash scripts/setup.sh

## data: render the default dataset (cached by a hash of the render config)
data: setup
	$(PY) blender/render_shapes.py --out $(DATA)

## demo: render the shapes, a sample sheet, a 3-β demo sweep and its report (time: README.md)
demo: setup
	$(PY) blender/render_shapes.py --out $(DATA)
	$(PY) dataset.py sheet --data $(DATA) --out img/samples.png
	$(PY) training.py sweep --preset demo --betas 1 4 16 --seeds 0 --out $(DEMO)
	$(PY) latentSpace.py report $(DEMO) --protocol study

## study: the converged β × seed study (results/study/README.md); resumable, skips published runs
STUDY_BETAS := 1 2 4 8 16
STUDY_SEEDS := 0 1 2
study: setup
	$(PY) blender/render_shapes.py --out $(DATA)
	$(PY) training.py sweep --preset study --betas $(STUDY_BETAS) --seeds $(STUDY_SEEDS) \
		--out runs/study --publish results/study
	$(PY) latentSpace.py report results/study --protocol study

## study_wide: the long, wide-moves study with scores over training (results/study_wide/README.md);
## resumable: trains what is not published yet, scores every snapshot in runs/, publishes the
## scores too (a run scored after publishing is re-published), and rewrites the report
WIDE_BETAS := 1 4 16
WIDE_RUNS  := runs/study_wide
study_wide: setup
	$(PY) blender/render_shapes.py --out $(DATA)
	$(PY) training.py sweep --preset wide --betas $(WIDE_BETAS) --seeds $(STUDY_SEEDS) \
		--out $(WIDE_RUNS) --publish results/study_wide
	$(PY) latentSpace.py report $(WIDE_RUNS) --protocol study --all-snapshots
	$(PY) training.py sweep --preset wide --betas $(WIDE_BETAS) --seeds $(STUDY_SEEDS) \
		--out $(WIDE_RUNS) --publish results/study_wide
	$(PY) latentSpace.py report results/study_wide --protocol study
	$(PY) scripts/compare_studies.py results/study results/study_wide --step 8000 \
		--out results/study_wide/narrow_vs_wide.md

## dsprites_study: disentanglement_lib's model and settings (the dsprites preset) on the
## dSprites-like data (results/dsprites/README.md): β 1, 4, 16 × 3 seeds, DSPRITES_STEPS steps of
## 64, scores at every snapshot. Resumable; a larger DSPRITES_STEPS (added to DSPRITES_SNAPS)
## extends the finished runs (bit-exact) toward disentanglement_lib's 300 000 (config.DLIB_STEPS).
DSPRITES_BETAS := 1 4 16
DSPRITES_RUNS  := runs/dsprites
DSPRITES_STEPS := 8000
DSPRITES_SNAPS := 2000 4000 8000
DSPRITES_SWEEP := training.py sweep --preset dsprites --betas $(DSPRITES_BETAS) \
	--seeds $(STUDY_SEEDS) --steps $(DSPRITES_STEPS) --snapshot_steps $(DSPRITES_SNAPS) \
	--out $(DSPRITES_RUNS)
dsprites_study: setup
	$(PY) $(DSPRITES_SWEEP)
	$(PY) latentSpace.py report $(DSPRITES_RUNS) --protocol study --all-snapshots
	$(PY) $(DSPRITES_SWEEP) --publish results/dsprites
	$(PY) latentSpace.py report results/dsprites --protocol study

## seed_128: the seed's own contrast at 128² (results/seed_128/README.md): the paper preset, β = 1
## against β = 102, one seed each, a qualitative reproduction; resumable (a larger SEED128_STEPS
## extends the finished runs). Scores the final models and the SEED128_SCORED snapshots.
SEED128_RUNS   := runs/seed_128
SEED128_STEPS  := 4000
SEED128_SCORED := 1000 2000
SEED128_SWEEP  := training.py sweep --preset paper --betas 1 102 --seeds 0 --steps $(SEED128_STEPS) \
	--frame_every 200 --snapshot_steps 500 1000 2000 3000 4000 --out $(SEED128_RUNS)
seed_128: setup
	$(PY) blender/render_shapes.py --out $(DATA)
	$(PY) $(SEED128_SWEEP)
	for run in $(SEED128_RUNS)/beta*_seed0; do \
		$(PY) latentSpace.py evaluate $$run --protocol study --steps $(SEED128_SCORED) || exit 1; done
	$(PY) $(SEED128_SWEEP) --publish results/seed_128
	$(PY) latentSpace.py report results/seed_128 --protocol study
	$(PY) scripts/training_budget.py results/seed_128/beta1_seed0 results/seed_128/beta102_seed0 \
		--steps 500 1000 2000 3000 4000 --out results/seed_128

## test: the whole suite (unit, real renders, real short trainings, notebooks, reliability) on
## TensorFlow, then the model, training, evaluation, notebook and Ray tests again on JAX with TensorFlow
## unimportable (tests/no_tensorflow), as on a JAX-only GPU machine
JAX_TESTS := tests/test_model.py tests/test_training.py tests/test_saved_models.py \
	tests/test_latent_space.py tests/test_objectives.py tests/test_notebooks.py tests/test_ray_sweep.py \
	tests/test_datasets.py tests/test_architectures.py tests/test_explorer.py
## the latent explorer's browser test needs Debian's chromium: installed here where apt can
## (the test skips, saying why, where it can't)
test: setup
	@WITH_CHROMIUM=1 bash scripts/setup.sh
	$(PY) -m ruff check .
	$(PY) -m pytest -q
	KERAS_BACKEND=jax PYTHONPATH=$(CURDIR)/tests/no_tensorflow $(PY) -m pytest -q $(JAX_TESTS)

## bench: performance figures, written to BENCHMARKS.md
bench: setup
	$(PY) bench/run_all.py --out BENCHMARKS.md

## stress: the heavy fault-injection variants (10 kill points)
stress: setup
	STRESS=1 $(PY) -m pytest -q tests/reliability

## figures: README figures in img/ from the committed study (or SWEEP=runs/NAME)
figures: setup
	$(PY) blender/render_shapes.py --out $(DATA)
	$(PY) latentSpace.py figures $(SWEEP) --out img

## explorer_png: img/explorer.png, the latent explorer drawn by JupyterLab in headless Chromium
explorer_png:
	WITH_CHROMIUM=1 bash scripts/setup.sh
	$(PY) blender/render_shapes.py --out $(DATA)
	$(PY) scripts/explorer_screenshot.py --out img/explorer.png

lint: setup
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format . && $(PY) -m ruff check --fix .

clean:
	rm -rf runs .pytest_cache
