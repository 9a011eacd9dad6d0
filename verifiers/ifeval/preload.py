"""Importing this module loads langdetect's language profiles (~0.4 s, ~60 MB) right away.

The profiles load lazily on the first language check otherwise. A process that forks workers
(the sandbox's zygote, via its ``extra_modules``) can import this first so that every worker
shares one copy of the profiles instead of loading its own.
"""

from verifiers.ifeval.language import supported_languages

LANGUAGES = supported_languages()
