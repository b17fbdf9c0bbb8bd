"""``niclip-ray serve``: the :class:`~niclip_ray.decoding.decoder.Decoder` as an HTTP service on Ray Serve.

- :mod:`~niclip_ray.serve.uploads`: request bodies -> checked NIfTI images (no Ray);
- :mod:`~niclip_ray.serve.responses`: decode frames -> the JSON the API returns (no Ray);
- :mod:`~niclip_ray.serve.page`: the web page and its server-side brain plot (no Ray);
- :mod:`~niclip_ray.serve.app`: the FastAPI ingress and the Serve deployment;
- :mod:`~niclip_ray.serve.control`: start, wait for, inspect and stop the application.
"""
