"""BasicSR-style registry scanning, shared by the subpackages."""
import importlib
from pathlib import Path


def import_modules(package_name, package_file, suffix):
    """Import every ``*{suffix}.py`` module beside ``package_file`` so that its classes register.

    Returns the imported modules (sorted by name, so registration order is reproducible).
    """
    folder = Path(package_file).parent
    names = sorted(p.stem for p in folder.glob(f'*{suffix}.py'))
    return [importlib.import_module(f'{package_name}.{name}') for name in names]
