"""The architecture catalogue as the API shows it."""

from app.architectures.schemas import ArchitectureRead
from core import catalog


def list_architectures() -> list[ArchitectureRead]:
    """Every supported architecture, by name."""
    return [ArchitectureRead(name=name, family=entry["family"], block_groups=catalog.block_group_names(name),
                             total_params=entry["total_params"], preprocessing=entry["preprocessing"])
            for name in catalog.arch_names() if (entry := catalog.get_arch(name))]
