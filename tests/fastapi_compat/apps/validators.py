"""pydantic validators: field_validator, model_validator, computed values, model_validate."""
from datetime import date

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, ValidationError, field_validator, model_validator

app = FastAPI()


class Signup(BaseModel):
    username: str
    password: str
    password_repeat: str
    birthday: date

    @field_validator("username")
    @classmethod
    def username_alphanumeric(cls, value: str) -> str:
        if not value.isalnum():
            raise ValueError("must be alphanumeric")
        return value.lower()

    @model_validator(mode="after")
    def passwords_match(self) -> "Signup":
        if self.password != self.password_repeat:
            raise ValueError("passwords do not match")
        return self


@app.post("/signup")
def signup(form: Signup):
    return {"username": form.username, "birthday": form.birthday, "year": form.birthday.year}


@app.post("/manual")
def manual(payload: dict):
    try:
        signup = Signup.model_validate(payload)
    except ValidationError as error:
        raise HTTPException(400, detail=[{"loc": e["loc"], "type": e["type"]} for e in error.errors()])
    return {"json": signup.model_dump_json()}
