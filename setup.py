"""prefill_router: LLM routing from prefill activations, in JAX/Flax."""
import setuptools

RUNTIME = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "ml-collections==1.1.0",
    "absl-py==2.5.1",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "safetensors==0.8.0",
    "tokenizers==0.23.3",
    "gguf==0.19.0",
    "jinja2>=3.1",
    "matplotlib>=3.8",
    "tqdm>=4.66",
]
# Reference stack: PyTorch implementations the ports are tested against, and
# scikit-learn baselines for the probe benchmark. Never imported by the library.
TEST = [
    "torch==2.13.0",  # the CPU wheel; a looser spec pulls several GB of CUDA
    "transformers==5.23.0",
    "accelerate",
    "scikit-learn==1.9.1",
    "pandas",
    "pytest",
    "pytest-xdist",
]

setuptools.setup(
    name="prefill_router",
    version="0.1.0",
    description="Route prompts to LLMs from an encoder's prefill residual stream (JAX/Flax).",
    python_requires=">=3.11",
    packages=setuptools.find_packages(include=["prefill_router", "prefill_router.*"]),
    package_data={"prefill_router": ["**/*.md"]},
    install_requires=RUNTIME,
    extras_require={"test": TEST},
)
