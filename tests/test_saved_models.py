"""Models saved by an older version of the code still load and encode exactly as they did.

tests/fixtures/premove_sbd.keras is the model.keras of a `test`-preset run (20 steps, SBD decoder,
optimiser state included) and premove_deconv.keras a deconv model of the same preset saved without
its optimiser, both written by commit 3d19527, before the plumbing moved into sbd_vae/.
premove_reference.npz holds a fixed input and what that code computed from it (posterior mean,
log-variance and decoder logits). A .keras file names each class by its Keras registration
("sbd_vae>BetaVAE", …) and the module it was defined in, so moving or renaming a model class, or
changing its registered package, would break every saved run: this test says so.
"""

from pathlib import Path

import keras
import numpy as np
import pytest

from variationAutoEncoder import BetaVAE, DeconvDecoder, SpatialBroadcastDecoder

DATA = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.parametrize(
    "name, decoder", [("sbd", SpatialBroadcastDecoder), ("deconv", DeconvDecoder)]
)
def test_pre_move_model_loads_and_encodes_as_before(name, decoder):
    ref = np.load(DATA / "premove_reference.npz")
    model = keras.models.load_model(DATA / f"premove_{name}.keras", compile=False)
    assert isinstance(model, BetaVAE) and isinstance(model.decoder, decoder)
    assert (model.image_size, model.latent_dim, model.decoder_name) == (32, 6, name)
    mean, logvar = model.encode(ref["x"])  # (4, 6) each
    np.testing.assert_allclose(np.asarray(mean), ref[f"{name}_mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(logvar), ref[f"{name}_logvar"], rtol=1e-5, atol=1e-6)
    logits = model.decode(mean, logits=True)  # (4, 32, 32, 1)
    np.testing.assert_allclose(np.asarray(logits), ref[f"{name}_logits"], rtol=1e-5, atol=1e-5)
