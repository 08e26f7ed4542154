"""BackgroundTasks: tasks queued by handlers and dependencies run after the response."""
from typing import Annotated, Union

from fastapi import BackgroundTasks, Depends, FastAPI

app = FastAPI()

log: list[str] = []


def write_log(message: str):
    log.append(message)


def get_query(background_tasks: BackgroundTasks, q: Union[str, None] = None):
    if q:
        background_tasks.add_task(write_log, f"found query: {q}")
    return q


@app.post("/send-notification/{email}")
async def send_notification(email: str, background_tasks: BackgroundTasks, q: Annotated[str, Depends(get_query)]):
    background_tasks.add_task(write_log, f"message to {email}")
    return {"message": "Message sent", "queued_before": len(log)}
