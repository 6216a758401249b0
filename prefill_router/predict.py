"""Route new prompts with a saved router checkpoint: prompts -> encoder features -> P(correct) -> choice.

    predictor = RouterPredictor.load("runs/default/router")
    P = predictor.predict(prompts)                     # [N, K] ensemble P(correct)
    costs = predictor.expected_costs(prompts)          # [N, K] $ (input tokens x price + median output)

The encoders named in the checkpoint are loaded from the registry (weights fetched into the cache
if needed) and only the layers and poolings the router reads are used; features go through the
same resumable feature store as training, so evaluating a large split twice costs one extraction.
"""
import dataclasses

import numpy as np

from prefill_router import paths
from prefill_router.data import costs as costs_lib
from prefill_router.encoders import registry
from prefill_router.features.extract import extract_features
from prefill_router.router import checkpoint, policies


@dataclasses.dataclass
class RouterPredictor:
    bundle: object
    cache_dir: str | None = None

    @classmethod
    def load(cls, checkpoint_dir, cache_dir=None) -> "RouterPredictor":
        return cls(checkpoint.load_router(checkpoint_dir), cache_dir)

    @property
    def targets(self) -> tuple[str, ...]:
        return self.bundle.targets

    def features(self, prompts) -> dict:
        """(encoder, layer, pooling) -> [N, D] for every source the router's blocks read."""
        if not prompts:
            raise ValueError("no prompts to route")
        blank = [i for i, p in enumerate(prompts) if not str(p).strip()]
        if blank:
            raise ValueError(f"prompt {blank[0]} (of {len(prompts)}) is empty or whitespace; give the text to route")
        extract = dict(self.bundle.extra.get("extract", {}))
        sources = {s for b in self.bundle.blocks for s in b.sources}
        out = {}
        for name in sorted({s.encoder for s in sources}):
            enc = registry.load_encoder(name, cache_dir=self.cache_dir, dtype=extract.get("dtype", "float32"),
                                        head=False)
            fs = extract_features(enc, list(prompts), store_dir=paths.cache_dir(self.cache_dir) / "features",
                                  batch_tokens=extract.get("batch_tokens"),
                                  max_length=extract.get("max_length", 2048),
                                  dtype=extract.get("dtype", "float32"),
                                  template_kwargs=extract.get("template_kwargs") or {},
                                  truncate=extract.get("truncate", "warn"), progress=len(prompts) > 64)
            self._check_identity(name, fs.encoder_identity)
            for s in (s for s in sources if s.encoder == name):
                out[(s.encoder, s.layer, s.pooling)] = fs.get(s.pooling, [s.layer])[0]
        return out

    def _check_identity(self, name, identity) -> None:
        saved = self.bundle.encoders.get(name, {}).get("identity")
        if saved is not None and saved != identity:
            raise ValueError(f"encoder {name!r} now resolves to weights {identity!r}, but the router was trained "
                             f"on {saved!r}; use the original weights or retrain the router")

    def predict(self, prompts) -> np.ndarray:
        return self.bundle.predict_from_features(self.features(prompts))

    def expected_costs(self, prompts) -> np.ndarray:
        return self.bundle.expected_costs(costs_lib.estimate_input_tokens(prompts))

    def route(self, prompts, *, tolerance: float | None = None, lam: float | None = None):
        """-> (choices [N], P [N, K], costs [N, K]); tolerance rule by default (τ = 0.2), or λ-utility."""
        P, costs = self.predict(prompts), self.expected_costs(prompts)
        if lam is not None:
            return policies.route_utility(P, costs, lam), P, costs
        return policies.route_tolerance(P, costs, 0.2 if tolerance is None else tolerance), P, costs
