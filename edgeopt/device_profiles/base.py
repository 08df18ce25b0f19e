"""Building blocks shared by the profile's models: the strict, frozen section base and the value types."""
from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(ge=1)]
NonEmpty = Annotated[str, Field(min_length=1)]


class Section(BaseModel):
    """Base of every profile model: unknown keys are errors, values are not coerced, models are frozen."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, use_attribute_docstrings=True)
