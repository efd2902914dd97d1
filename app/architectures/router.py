"""Architecture routes: what base_model.arch and freeze.until accept."""

from fastapi import APIRouter

from app.architectures import service
from app.architectures.schemas import ArchitecturePage
from app.deps import Reader
from app.openapi import ERROR_RESPONSES, errors

router = APIRouter(prefix="/v1/architectures", tags=["architectures"], responses=ERROR_RESPONSES)


@router.get("", response_model=ArchitecturePage, responses=errors(),
            summary="Supported architectures: block groups, parameters, default preprocessing")
def list_architectures(principal: Reader) -> ArchitecturePage:
    return ArchitecturePage(data=service.list_architectures(), has_more=False)
