"""Safe extraction of revision bundles (tar, tgz, zip) and copies of directory revisions.

Nothing lands outside the archive folder: absolute names, escaping `..`, links that point
outside, writes through links, hard links to anything but earlier files, devices and FIFOs are
refused, each with a message naming the member; member count, total size and compression ratio
are limited by `archive:` in codedeployagent.yml. Synchronous: the executor runs these in a
thread.
"""

from __future__ import annotations

from codedeploy_agent.archive.directory import copy_directory_bundle
from codedeploy_agent.archive.unpack import strip_top_folder, unpack_bundle

__all__ = ["copy_directory_bundle", "strip_top_folder", "unpack_bundle"]
