"""The OpenAPI document: the routing calls' bodies from their msgspec Structs (router.payloads), and what no
one view declares: the errors every call may meet, the CSV and YAML bodies of the calls that offer them,
and that a query parameter may not be empty (drf-spectacular postprocessing hook)."""

import msgspec
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.plumbing import ResolvedComponent

from switchboard.vocabulary import ProviderKind

COMPONENTS = "#/components/schemas/{name}"
# The provider kinds as msgspec lists an enum's values (sorted), so that SPECTACULAR_SETTINGS' ENUM_NAME_OVERRIDES
# names them one enum wherever they appear.
PROVIDER_KINDS = sorted(ProviderKind.values)


class StructExtension(OpenApiSerializerExtension):
    """A msgspec Struct in @extend_schema is described by msgspec's own JSON Schema of it, its nested Structs
    as components of their own."""

    target_class = "msgspec.Struct"
    match_subclasses = True

    def get_name(self, auto_schema, direction) -> str:
        return self.target.__name__

    def map_serializer(self, auto_schema, direction) -> dict:
        (schema,), components = msgspec.json.schema_components([self.target], ref_template=COMPONENTS)
        for name, component in components.items():
            if name != self.target.__name__:
                auto_schema.registry.register_on_missing(
                    ResolvedComponent(name=name, type=ResolvedComponent.SCHEMA, object=name, schema=openapi_30(component)))
        return openapi_30(components[self.target.__name__])


def openapi_30(schema):
    """JSON Schema as OpenAPI 3.0 says it: `anyOf` a type and null becomes the type with `nullable` (a reference inside
    `allOf`); `title`, which msgspec gives each Struct, is left out as drf-spectacular leaves it out of components, and
    `propertyNames`, which OpenAPI 3.0 lacks (the server still checks the names)."""
    if isinstance(schema, list):
        return [openapi_30(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: openapi_30(value) for key, value in schema.items() if key not in ("title", "propertyNames")}
    options = schema.get("anyOf")
    if options and {"type": "null"} in options:
        others = [option for option in options if option != {"type": "null"}]
        del schema["anyOf"]
        if len(others) == 1 and "$ref" in others[0]:
            return {"allOf": others, "nullable": True} | schema
        if len(others) == 1:
            return others[0] | schema | {"nullable": True}
        return schema | {"anyOf": others, "nullable": True}
    return schema


ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
# Every authenticated call under /api/v1/ may answer these, in the one error shape (router.errors).
COMMON_ERRORS = {
    "400": "The request is malformed or invalid; `detail` says what to fix.",
    "401": "No API key, or one that is not valid.",
    "403": "The key lacks the scope this call needs.",
    "404": "Nothing there: a page past the end of a list.",
    "405": "The path does not take this method.",
    "411": "A chunked body this server cannot read: send it with a Content-Length.",
    "406": "The API answers JSON (and, where offered, CSV or YAML) only.",
    "413": "The body is larger than allowed.",
    "415": "The body is not JSON (or YAML where offered).",
}
# Calls that answer 503 beyond the routing calls (which declare their own refusals).
UNAVAILABLE = {
    ("/api/v1/decisions", "get"): "ledger_incomplete: the rows still in Redis cannot be written first; retry after Retry-After.",
    ("/api/v1/usage", "post"): "counters_busy or counters_unavailable: retry after Retry-After.",
    ("/api/v1/quotas", "get"): "counters_unavailable: Redis is down and ROUTER_REDIS_DOWN=refuse.",
}
OTHER_CONTENT = {
    ("/api/v1/decisions", "get"): ("text/csv", {"type": "string"}, "With format=csv: every match as CSV."),
    ("/api/v1/policy", "get"): ("application/yaml", {"type": "object"},
                                "With format=yaml or Accept: application/yaml: the same document as a policy file."),
}


def add_undeclared_answers(result: dict, generator, request, public) -> dict:
    for path, methods in result["paths"].items():
        if not path.startswith("/api/v1/") or path == "/api/v1/health":
            continue
        for method, operation in methods.items():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                if parameter["in"] == "query" and schema.get("type") == "string":
                    schema["minLength"] = 1  # an empty filter is refused (router.filters)
                    if "enum" not in schema and "format" not in schema:
                        schema["pattern"] = "^[^\\u0000]*$"  # and one holding a NUL
            if "requestBody" in operation:
                operation["requestBody"]["required"] = True  # no call here takes an empty body
            responses = operation.setdefault("responses", {})
            for code, description in COMMON_ERRORS.items():
                responses.setdefault(code, {"content": ERROR, "description": description})
            if description := UNAVAILABLE.get((path, method)):
                responses.setdefault("503", {"content": ERROR, "description": description})
            if other := OTHER_CONTENT.get((path, method)):
                content_type, schema, description = other
                answer = responses["200"]
                answer.setdefault("content", {})[content_type] = {"schema": schema}
                answer["description"] = " ".join(filter(None, [answer.get("description", "").rstrip(".") + ".", description]))
    return result
