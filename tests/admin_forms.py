"""Admin change forms read and submitted as a browser would, for tests that post to the admin."""

from html.parser import HTMLParser


class _FormReader(HTMLParser):
    """Collects what a browser would submit from an admin change form (the one whose id ends in _form)."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, list[str]] = {}
        self.in_form = False
        self.select: str | None = None
        self.select_first: str | None = None
        self.textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.in_form = (attrs.get("id") or "").endswith("_form")
            return
        name = attrs.get("name")
        if not self.in_form or (name and "__prefix__" in name):
            return
        if tag == "input" and name:
            kind = attrs.get("type", "text")
            if kind in ("submit", "button", "file") or (kind in ("checkbox", "radio") and "checked" not in attrs):
                return
            self.data.setdefault(name, []).append(attrs.get("value") or ("on" if kind == "checkbox" else ""))
        elif tag == "select" and name:
            self.select, self.select_first = name, None
            self.data.setdefault(name, [])
            self.multiple = "multiple" in attrs
        elif tag == "option" and self.select:
            if self.select_first is None:
                self.select_first = attrs.get("value", "")
            if "selected" in attrs:
                self.data[self.select].append(attrs.get("value", ""))
        elif tag == "textarea" and name:
            self.textarea = name
            self.data[name] = [""]

    def handle_endtag(self, tag):
        if tag == "form":
            self.in_form = False
        elif tag == "select" and self.select:
            if not self.data[self.select] and not self.multiple and self.select_first is not None:
                self.data[self.select] = [self.select_first]
            self.select = None
        elif tag == "textarea":
            self.textarea = None

    def handle_data(self, data):
        if self.textarea:
            self.data[self.textarea][0] += data.removeprefix("\n") if not self.data[self.textarea][0] else data


def form_data(client, url: str) -> dict:
    response = client.get(url)
    assert response.status_code == 200
    reader = _FormReader()
    reader.feed(response.content.decode())
    return {name: values for name, values in reader.data.items() if values}


def add_inline_row(data: dict, prefix: str, **fields) -> None:
    index = int(data[f"{prefix}-TOTAL_FORMS"][0])
    data[f"{prefix}-TOTAL_FORMS"] = [str(index + 1)]
    for name, value in fields.items():
        data[f"{prefix}-{index}-{name}"] = value
