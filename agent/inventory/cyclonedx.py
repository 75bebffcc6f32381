"""An image's inventory as a CycloneDX 1.6 JSON document (cyclonedx-python-lib).

metadata.component is the image (type container: its name, its id as version, the layers
read as properties); the operating system is a component of type operating-system; every
package is a library (application for a Go main module) with its purl as bom-ref, its
version, and the file it was found in as evidence.occurrences[].location. Source package
and version are the properties `mamori:source_name` / `mamori:source_version`; the files
a package installed are not written (they are in the JSON form, for the in-use view)."""
from __future__ import annotations

from cyclonedx.model import Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.component_evidence import ComponentEvidence, Occurrence
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from .store import Inventory


def document(inv: Inventory) -> str:
    bom = Bom()
    props = [Property(name="mamori:image_key", value=inv.key),
             Property(name="mamori:state", value=inv.state)]
    props += [Property(name="mamori:layer", value=d) for d in inv.layers]
    root = bom.metadata.component = Component(
        name=inv.image or inv.key, version=inv.image_id or None,
        type=ComponentType.CONTAINER, bom_ref=f"image:{inv.key}", properties=props)
    if inv.os.id:
        bom.components.add(Component(name=inv.os.id, version=inv.os.version_id or None,
                                     type=ComponentType.OPERATING_SYSTEM,
                                     bom_ref=f"os:{inv.os.id}",
                                     description=inv.os.pretty_name or None))
    seen: set = set()
    for p in inv.packages:
        ref = p.purl if p.purl not in seen else f"{p.purl}#{p.location}"
        if ref in seen:
            continue
        seen.add(ref)
        props = []
        if p.source_name and (p.source_name, p.source_version) != (p.name, p.version):
            props = [Property(name="mamori:source_name", value=p.source_name),
                     Property(name="mamori:source_version", value=p.source_version)]
        bom.components.add(Component(
            name=p.name, version=p.version or None, type=ComponentType.LIBRARY,
            purl=PackageURL.from_string(p.purl) if p.purl else None, bom_ref=ref,
            properties=props,
            evidence=ComponentEvidence(occurrences=[Occurrence(location=p.location)])
            if p.location else None))
    bom.register_dependency(root, list(bom.components))
    return JsonV1Dot6(bom).output_as_string(indent=2)
