"""The local web page of ``python predict.py --serve``: upload an image, type a text, see why.

Its HTML and CSS are the Jinja template ``templates/page.html`` beside this module.

Built on Flask (``pip install -r Requirements-serve.txt``): a small, long-kept
web library whose request parsing, upload size limit and HTML escaping we
would otherwise write ourselves; its server, Werkzeug, is already installed
with TensorBoard. The page is meant for one person on their own machine:

- ``GET /``: the page (choose an image, type the tweet's text, pick the run);
- ``POST /``: the same page with each model's and the late-fused probabilities and the explanation picture
  (:mod:`emorec.explain`), or a message saying what was wrong with the input; the page keeps the image of its
  last answer (sent back with the form), so a second text needs no second upload;
- ``POST /api/predict``: the same inputs (multipart form fields ``image``, ``text``, optionally ``run``),
  answered in JSON: ``{"run", "prediction", "class_names", "probabilities", "text_cut", "explanation"}``
  (``text_cut``: null, or how many tokens the text has and how many each text model read, with a ``note``), or
  ``{"error": message}`` with status 400 (bad input: no image, an empty text, a text that is not UTF-8),
  404 (no such run) or 413 (too large).

The models of a run are loaded once, the first time the run is asked for (the default run before the server
starts listening), and again only when its files change. The server answers one request at a time: an answer
takes well under a second (0.08 s for the explanation at 112 px on two CPU cores, after the first one's 1.6 s of
tracing, and 0.3 s for its picture), TensorFlow already uses every core for it, and one request at a time keeps
the models' state simple; requests that come meanwhile wait their turn. Bad input never stops the server.
"""

from __future__ import annotations

import base64
import io
import logging
from pathlib import Path

from emorec.errors import InputError

log = logging.getLogger("emorec")

MAX_PIXELS = 50_000_000  # larger images are refused: decoding one takes gigabytes
ROOT_RUN = ""  # the run written without --run-name, straight into the checkpoint folder
TEMPLATES = str(Path(__file__).with_name("templates"))  # the page's HTML, a Jinja template (page.html)


class BadInput(InputError):
    """A request the page refuses, with the HTTP status to answer it with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Runs:
    """The trained runs in ``checkpoint_dir`` (the folder itself, and each subfolder named by ``--run-name``),
    each loaded once as (:class:`emorec.predictor.RunModels`, :class:`emorec.explain.Explainer`)."""

    def __init__(self, checkpoint_dir: Path):
        self.checkpoint_dir = Path(checkpoint_dir)
        self._loaded: dict[str, tuple] = {}

    def names(self) -> list[str]:
        """The runs that hold a late fusion's weights, the unnamed one first."""
        found = [ROOT_RUN] if (self.checkpoint_dir / "Late_fusion.metrics.json").is_file() else []
        if self.checkpoint_dir.is_dir():
            found += sorted(path.parent.name for path in self.checkpoint_dir.glob("*/Late_fusion.metrics.json"))
        return found

    def get(self, name: str):
        """The run ``name`` (``""``: the unnamed one) as (models, explainer); :class:`BadInput` (404) when the
        checkpoint folder holds no such run or the run is not whole."""
        from emorec.explain.explainer import Explainer
        from emorec.predictor import RunModels, run_files

        if name != ROOT_RUN and name not in self.names():  # never a path from the request: only runs that exist
            raise BadInput(
                f"no trained run named {name!r} in {self.checkpoint_dir}/: run the phases with "
                f"--run-name {name}, or choose one of the runs listed",
                404,
            )
        folder = self.checkpoint_dir / name
        try:
            stamp = tuple(path.stat().st_mtime_ns for path in run_files(folder))
        except FileNotFoundError:
            stamp = None
        if stamp is None or name not in self._loaded or self._loaded[name][0] != stamp:
            try:
                models = RunModels.load(folder)
            except InputError as error:
                raise BadInput(f"the run in {folder}/ cannot be used: {error}", 404) from error
            explainer = Explainer(models)
            explainer.warm_up()
            log.info("loaded the run in %s", folder)
            self._loaded[name] = (stamp, models, explainer)
        return self._loaded[name][1:]


def read_upload(data: bytes, filename: str, image_size: int):
    """Check an uploaded image and decode it: returns (pixels (size, size, 3) as the models see them, the
    original PIL image); :class:`BadInput` when it is not an image Pillow reads or has over :data:`MAX_PIXELS`."""
    from PIL import Image, UnidentifiedImageError

    from emorec.images import load_image, upright

    if not data:
        raise BadInput("choose an image file (the upload was empty)")
    try:
        original = Image.open(io.BytesIO(data))
        width, height = original.size
        if width * height > MAX_PIXELS:
            raise BadInput(
                f"{filename} is {width}x{height} pixels; the page takes images of at most "
                f"{MAX_PIXELS // 1_000_000} megapixels",
                413,
            )
        original.load()
        original = upright(original)  # a phone photo stored sideways, shown as it was taken
    except Image.DecompressionBombError as error:
        raise BadInput(f"{filename} is too large an image: {error}", 413) from error
    except UnidentifiedImageError as error:
        raise BadInput(
            f"{filename} is not an image this page can read: its format is none of those it knows "
            "(JPEG, PNG, GIF, WebP, BMP, ...)"
        ) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise BadInput(f"{filename} cannot be read as an image: the file is damaged or cut short ({error})") from error
    pixels, ok = load_image(io.BytesIO(data), image_size)
    if not ok:
        raise BadInput(f"{filename} could not be decoded as an image")
    return pixels, original


UNDECODED = "\ufffd"  # what a byte that is not UTF-8 becomes in a form field


def chosen_image(form, files) -> tuple[str, bytes] | None:
    """The request's image as (file name, bytes): the upload, or else the image of the page's last answer, which
    the page sends back (``kept_image``, base64) so that a second text needs no second upload; None if neither."""
    upload = files.get("image")
    if upload is not None and upload.filename:
        return upload.filename, upload.read()
    if form.get("kept_image"):
        try:
            return form.get("kept_name") or "image", base64.b64decode(form["kept_image"], validate=True)
        except ValueError as error:
            raise BadInput("the kept image came back damaged: choose the image file again") from error
    return None


def create_app(checkpoint_dir: Path, default_run: str | None = None, max_upload_mb: float = 10.0):
    """The Flask application of the page, for the runs in ``checkpoint_dir`` (``default_run`` preselected);
    requests over ``max_upload_mb`` are refused with a message."""
    flask = _flask()
    from werkzeug.exceptions import RequestEntityTooLarge

    app = flask.Flask("emorec", template_folder=TEMPLATES)
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 1_000_000)
    site = _Site(flask, Runs(checkpoint_dir), default_run or ROOT_RUN, checkpoint_dir, max_upload_mb)
    app.get("/")(site.index)
    app.post("/")(site.submit)
    app.post("/api/predict")(site.api_predict)
    app.errorhandler(RequestEntityTooLarge)(site.too_large)
    app.runs = site.runs
    return app


class _Site:
    """The page's views over the runs in ``checkpoint_dir`` (:class:`Runs`), ``default`` preselected."""

    def __init__(self, flask, runs: Runs, default: str, checkpoint_dir: Path, max_upload_mb: float):
        self.flask, self.runs, self.default = flask, runs, default
        self.checkpoint_dir, self.max_upload_mb = checkpoint_dir, max_upload_mb

    def answer(self, form, image) -> dict:
        """The prediction for the form's text and the uploaded ``image`` (name, bytes): explained when both are
        given, else from the models that can score the one given (``one_sided``, :func:`one_sided_answer`)."""
        from emorec.predictor import NOTHING_GIVEN, has_text

        text = form.get("text") or ""
        if UNDECODED in text:  # Werkzeug decodes form fields as UTF-8, replacing what is not with U+FFFD
            raise BadInput(
                "the text is not UTF-8: send it encoded as UTF-8 (bytes that are not UTF-8 would reach "
                "the models as the replacement character \ufffd)"
            )
        if image is None and not has_text(text):
            raise BadInput(NOTHING_GIVEN)
        models, explainer = self.runs.get(form.get("run", self.default))
        pixels, original = read_upload(image[1], image[0], models.image_size) if image else (None, None)
        if image is None or not has_text(text):  # the modalities' parts are not defined for one of them
            return {"one_sided": one_sided_answer(models, text.strip(), pixels, image and image[0])}
        explanation = explainer.explain(text.strip(), pixels, image[0])
        return {"explanation": explanation, "original": original}

    def page(self, status: int = 200, image=None, **values):
        kept = None if image is None else {"name": image[0], "data": base64.b64encode(image[1]).decode("ascii")}
        return self.flask.render_template(
            "page.html",
            runs=self.runs.names(),
            selected=values.pop("run", self.default),
            checkpoint_dir=str(self.checkpoint_dir),
            limit_mb=self.max_upload_mb,
            kept=kept,
            **values,
        ), status

    def index(self):
        return self.page()

    def submit(self):
        from emorec.explain.figure import png_bytes
        from emorec.explain.output import cut_note, to_json

        form, image = self.flask.request.form, None
        run = form.get("run", self.default)
        try:
            image = chosen_image(form, self.flask.request.files)
            result = self.answer(form, image)
        except BadInput as error:
            return self.page(error.status, image=image, error=str(error), text=form.get("text", ""), run=run)
        if "one_sided" in result:
            data = result["one_sided"]
            return self.page(image=image, result=data, text=data["text"], run=run, models=MODEL_NAMES)
        explanation = result["explanation"]
        picture = base64.b64encode(png_bytes(explanation, result["original"])).decode("ascii")
        data = to_json(explanation)
        cut = cut_note(data["text_cut"]) if data["text_cut"] else None
        return self.page(
            image=image, result=data, picture=picture, text=explanation.text, run=run, models=MODEL_NAMES, cut=cut
        )

    def api_predict(self):
        from emorec.explain.output import cut_note, to_json

        form = self.flask.request.form
        try:
            result = self.answer(form, chosen_image(form, self.flask.request.files))
        except BadInput as error:
            return {"error": str(error)}, error.status
        if "one_sided" in result:
            return {"run": form.get("run", self.default), **result["one_sided"]}
        data = to_json(result["explanation"])
        return {
            "run": form.get("run", self.default),
            **{key: data[key] for key in ("prediction", "class_names", "probabilities", "text_cut")},
            **({"note": cut_note(data["text_cut"])} if data["text_cut"] else {}),
            "explanation": data,
        }

    def too_large(self, error):
        message = f"the upload is over this page's limit of {self.max_upload_mb:g} MB (--max-upload-mb)"
        if self.flask.request.path.startswith("/api/"):
            return {"error": message}, 413
        return self.page(413, error=message)


def serve(checkpoint_dir: Path, default_run: str | None, host: str, port: int, max_upload_mb: float) -> int:
    """Serve the page on ``host``:``port`` until Ctrl-C (then return 0), one request at a time."""
    app = create_app(checkpoint_dir, default_run, max_upload_mb)  # first: without Flask, the how-to
    from werkzeug.serving import make_server

    try:
        app.runs.get(default_run or ROOT_RUN)  # load the default run now, so the first answer is quick
    except BadInput as error:
        log.warning("%s\nThe page starts anyway and says so until the run is there.", error)
    server = make_server(host, port, app, threaded=False)
    log.info("serving the page on http://%s:%d/ (one request at a time; Ctrl-C stops)", host, server.server_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopped")
    finally:
        server.server_close()
    return 0


def one_sided_answer(models, text: str, pixels, image_name: str | None) -> dict:
    """The prediction for a tweet with its text alone (``pixels`` None) or its image alone (``text`` empty), from
    the models that can score it (:meth:`emorec.predictor.RunModels.score_posts`), as JSON data: the
    probabilities by class name (None for a model that cannot score it), the prediction and the models used."""
    import numpy as np

    from emorec.predictor import models_used

    given = pixels is not None
    if given:
        ier, fusion = models.image_features(pixels[None].astype(np.float32), direct=True)
    else:  # no image to run the backbone on: features of the right shape, which the models read as absent
        ier, fusion = (
            np.zeros((1, *e.output_shape[1:]), np.float32) for e in (models.ier_extractor, models.fusion_extractor)
        )
    members = models.score_posts([text], ier, fusion, np.array([given]), 1)
    late = models.fuse(members)
    names = models.class_names

    def by_class(p):
        return None if np.isnan(p).any() else {name: round(float(v), 6) for name, v in zip(names, p)}

    return {
        "text": text,
        "image": image_name,
        "class_names": names,
        "prediction": names[int(np.argmax(late[0]))],
        "probabilities": {m: by_class(p[0]) for m, p in {**members, "Late_fusion": late}.items()},
        "models_used": models_used(members)[0].split("+"),
        "text_cut": None,
        "note": "one modality given: the models that can score it did (no explanation: its parts need both)",
    }


def _flask():
    try:
        import flask
    except ImportError as error:
        raise InputError(
            "the web page needs Flask, which the core requirements leave out: pip install -r Requirements-serve.txt"
        ) from error
    return flask


MODEL_NAMES = {
    "TER": "TER (text)",
    "IER": "IER (image)",
    "Intermediate_fusion": "Intermediate fusion",
    "Late_fusion": "Late fusion",
}
