"""Extra data types: datetime, date, time, timedelta, UUID, Decimal, enums, bytes."""
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum, IntEnum
from typing import Annotated, Union
from uuid import UUID

from fastapi import Body, FastAPI, Query
from pydantic import BaseModel

app = FastAPI()


class Color(str, Enum):
    red = "red"
    green = "green"


class Level(IntEnum):
    low = 1
    high = 2


class Event(BaseModel):
    id: UUID
    at: datetime
    day: date
    duration: timedelta
    price: Decimal
    color: Color = Color.red
    level: Level = Level.low


@app.put("/items/{item_id}")
async def read_items(
    item_id: UUID,
    start_datetime: Annotated[datetime, Body()],
    end_datetime: Annotated[datetime, Body()],
    process_after: Annotated[timedelta, Body()],
    repeat_at: Annotated[Union[time, None], Body()] = None,
):
    start_process = start_datetime + process_after
    duration = end_datetime - start_process
    return {
        "item_id": item_id,
        "start_datetime": start_datetime,
        "end_datetime": end_datetime,
        "process_after": process_after,
        "repeat_at": repeat_at,
        "start_process": start_process,
        "duration": duration,
    }


@app.post("/events")
def create_event(event: Event):
    return event


@app.get("/days")
def days(day: date, color: Color = Query(default=Color.green)):
    return {"weekday": day.isoweekday(), "color": color}
