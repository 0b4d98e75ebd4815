"""ZGW Zaken API adapter for municipalities (gemeente, and the ZVH it hosts): zv-gateway messages
↔ zaken in the municipality's case system, over the VNG Zaken API (``/api/v1``). Run it with
``zvg adapter zgw --config FILE``; the mapping file names the zaaktypen, roltypen and statustypen.

Flows:

1. **New zaak → case.referral.** A zaak of the configured zaaktype (e.g. the wijkteam's
   "Aanmelding ZVH"), started on or after ``since``, becomes a ``case.referral`` to the ZVH; the
   reason is the zaak's toelichting, the rest comes from the mapping's body defaults. The
   betrokkene (a natuurlijk-persoon ROL) is sent only as a pseudonym (HMAC of the BSN under the
   municipality's key); the case reference is the zaak's ``zv-gateway`` kenmerk, or a
   meaningless pseudonym of the zaak URL. One message per zaak (Idempotency-Key from the URL).
2. **Status on a zaak → case.status.** For zaken the adapter follows (those it made from
   received messages, or registered with :meth:`ZgwAdapter.follow`), a new STATUS whose
   statustype is in the mapping becomes a ``case.status`` (purpose by status: screening under
   ``ZVH.AANMELDING``, escalation under ``ZVH.RISICO``, …) to the organisation the zaak came from
   and the configured recipients.
3. **Received handover (or referral) → zaak.** A ``case.handover`` (or ``case.referral``) becomes
   a ZAAK of the configured zaaktype (identificatie ``ZVG-<message id>``, so a redelivery finds
   it instead of making a second one; the case reference as kenmerk), a ROL for the betrokkene
   with the BSN and name from the message, and an initial STATUS; then the message is acked.
   The Zaken API's 400 (the zaak breaks the standard) rejects the message (``invalid_content``).
"""

from adapters.zgw.adapter import ZgwAdapter, ZgwConfig, ZgwMapping, load, run

__all__ = ["ZgwAdapter", "ZgwConfig", "ZgwMapping", "load", "run"]
