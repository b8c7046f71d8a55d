"""The IAM subset: password tokens and project look-up (fdi-api.md E)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from openfdi.wire.common import WireModel


class IamDomain(WireModel):
    name: str | None = None
    id: str | None = None


class IamUser(WireModel):
    # A user's name has at most 64 characters (the users table): a longer one cannot exist, and
    # is not worth a row in the sign-in throttle. The password bound keeps hashing cheap to refuse.
    name: str = Field(max_length=64)
    password: str = Field(max_length=1024)
    domain: IamDomain | None = None


class IamPassword(WireModel):
    user: IamUser


class IamIdentity(WireModel):
    methods: list[str]
    password: IamPassword | None = None


class IamProjectRef(WireModel):
    id: str | None = None
    name: str | None = None


class IamScope(WireModel):
    project: IamProjectRef | None = None


class IamAuth(WireModel):
    identity: IamIdentity
    scope: IamScope | None = None


class TokenRequest(WireModel):
    auth: IamAuth


class IamNamed(BaseModel):
    id: str
    name: str


class IamProject(BaseModel):
    id: str
    name: str
    domain: IamNamed


class TokenBody(BaseModel):
    expires_at: str
    issued_at: str
    methods: list[str]
    project: IamProject
    user: IamNamed
    roles: list[IamNamed] = Field(default_factory=list)
    catalog: list[dict[str, object]] = Field(default_factory=list)


class TokenResponse(BaseModel):
    token: TokenBody


class ProjectEntry(BaseModel):
    id: str
    name: str
    domain_id: str
    enabled: bool = True
    description: str = ""


class ListProjectsResponse(BaseModel):
    projects: list[ProjectEntry]
    links: dict[str, str | None] = Field(default_factory=dict)
