"""The vulnerability database and the matcher: OSV records in SQLite, matched exactly against
an image's inventory (agent/inventory/package.py).

What it holds: OSV records (https://ossf.github.io/osv-schema/) as osv.dev exports them, one
JSON file per record in a per-ecosystem ``all.zip``. ``importer`` streams zips (entry by entry)
or directories into a new SQLite file (``store``: one row per record, one per affected
package, indexed by (ecosystem, normalised name)); ``update`` downloads the zips first.
``match`` turns (OSRelease, packages, image) into ``Finding``s with univers' version
ordering for each ecosystem (``versions``) and CVSS base scores from the vectors
(``severity``); ``scanner.Scanner`` remembers the inventories it was given and rescans them
when the database file is replaced.

Failure modes: a new database is always built beside the old one and swapped in with one
os.replace; a download cut short, a zip whose CRC or directory is bad, a file that is not an
OSV export, or a crash half way leave the previous database file untouched and in use (an
open reader keeps reading the old file). A bad record is skipped and reported as
``source:entry: why``; a withdrawn record is not stored. The database's age is recorded in
it (``built_at``); older than the configured age it is still used, with a warning.
"""
