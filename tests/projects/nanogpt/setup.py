from setuptools import find_packages, setup

setup(
    name="nanogpt",
    version="0.1.0",
    description="a small character-level model",
    packages=find_packages(exclude=["tests"]),
    install_requires=["numpy==2.1.3"],
    python_requires=">=3.9",
)
