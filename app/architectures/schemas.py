"""Architecture schemas."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

_EXAMPLE = {"name": "resnet18", "family": "resnet", "block_groups": ["stem", "layer1", "layer2", "layer3", "layer4",
                                                                      "head"],
            "total_params": 11_689_512,
            "preprocessing": {"resize": 256, "crop": 224, "interpolation": "bilinear", "mean": [0.485, 0.456, 0.406],
                              "std": [0.229, 0.224, 0.225]}}


class ArchitectureRead(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    name: str = Field(description="the value of base_model.arch")
    family: str
    block_groups: list[str] = Field(description="forward order, `head` last; freeze.until takes any but `head`")
    total_params: int = Field(description="with the native 1000-class head")
    preprocessing: dict[str, Any] = Field(description="the default input pipeline (resize, crop, mean, std)")


class ArchitecturePage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"data": [_EXAMPLE], "has_more": False}]})

    data: list[ArchitectureRead]
    has_more: bool = False
