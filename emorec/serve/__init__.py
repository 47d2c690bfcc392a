"""The local web page of ``python predict.py --serve``: the Flask app (:mod:`emorec.serve.app`) and its HTML, a
template file (``templates/page.html``)."""
