"""Packaging beyond pyproject.toml: the SQL of the top-level ``db/`` ships inside the wheel.

``db/`` stays where the user's layout puts it; setuptools maps it to the package ``pm_engine.schema``
so a non-editable install carries its migrations and function files (``pm-engine db-deploy`` reads
them through importlib.resources), and an editable install reads the same files from the tree.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["pm_engine", "pm_engine.*"]) + ["pm_engine.schema"],
    package_dir={"pm_engine.schema": "db"},

)
