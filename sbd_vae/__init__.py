"""The plumbing behind the five user modules at the repository root.

Users import ``dataset``, ``data``, ``variationAutoEncoder``, ``training`` and ``latentSpace``;
everything those modules share lives here, one short module per concern:

    hparams      the model's hyperparameters: names, allowed values, checks (β included), β_norm,
                 and the encoder/decoder registry (ENCODERS, DECODERS)
    architectures  disentanglement_lib's conv_encoder and deconv_decoder (--encoder dlib_conv,
                 --decoder dlib_deconv)
    config       TrainConfig, presets, config.json read/write
    datasets     the sampler contract (GroundTruthSampler) and the dataset registry (--dataset)
    dsprites     the dSprites-like (procedural) dataset: dSprites' exact grid, rendered here
    warp, renders  ShapesDataset's machinery: the resize pyramid and warp; the render file's checks
    hardware     CPU/GPU detection, the "auto" precision, the machine in words
    rundir       atomic writes, the run lock, checkpoints, history.csv
    callbacks    the training loop's Keras callbacks
    steps        BetaVAE's training and test steps, one per backend (auxiliary nets included)
    sweep        the β × seed grid: its check, sweep.json, publishing, the local executor
    sweep_ray    the same grid as Ray Tune trials
    protocol     the one table of sample counts of the "study" and "quick" protocols
    metrics/     one module per disentanglement metric, their registry and compute_metrics
    encoding     batched encode/decode, active units
    evaluation   scoring one loaded run: metrics.json and its figures
    report       a sweep's report: scores.csv, plots, index.md, the README figure set
    figures      latent-space plots; trainviz: training curves; plotting: the shared convention
    imaging      image grids and GIFs; convergence, significance: the report's rules

Imports point one way: the root modules import this package, and nothing here imports a root
module (tests/test_import_graph.py checks it). Where the package needs a root-level object
(``ShapesDataset``, ``BetaVAE``, ``training.train``), the caller passes it in; the dataset
registry names ``ShapesDataset``'s factory by import path, resolved when a run is built, and the
encoder/decoder registry names its Keras classes the same way. Importing a module here computes
nothing, and only callbacks.py (Keras callbacks) and architectures.py (Keras layers) import
TensorFlow then.
"""
