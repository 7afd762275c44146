"""The playground: a local web app to draw a digit and watch what a learned codec makes of it.

Owns the work behind the page, without any web framework (:mod:`.service`:
the models loaded once, compressing a drawn or uploaded image fitted to
MNIST's form, its latents against their prior, the classical codecs at the
nearest size, random bits decoded, ``.mnc`` files written and read), the
ASGI application and its JSON API (:mod:`.app`, FastAPI; imported only when
served), what one client may ask of it (:mod:`.guard`: limits, Host and Origin
checks), the server (:mod:`.server`, uvicorn, with limits on connections and
header time) and the page itself
(``static/index.html``, self-contained: no script or style from elsewhere).
``mnistcodec serve`` starts it.
"""
