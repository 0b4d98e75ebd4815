"""FHIR R4 adapter for mental-health care (GGZ) EHRs: zv-gateway messages ↔ FHIR resources,
over the EHR's FHIR REST API. Run it with ``zvg adapter fhir --config FILE``.

Flows (the EHR's staff work in their own EHR; the adapter polls it and the node):

1. **Bekendheidsvraag in, answer out.** An ``info.request`` becomes a ``Task`` (status
   ``requested``, code ``info.request``, ``for`` the Patient found by BSN, else the subject's
   pseudonym; requester = the ZVH by OIN). The message is acked once the Task is stored. When the
   staff complete the Task with outputs ``disposition`` (``known``/``not_known``/``refused``),
   ``involvement-*`` and ``contact`` (a PractitionerRole), the adapter sends the
   ``info.response`` to the requester and records the answer's message id on the Task. A Task
   set to ``rejected`` becomes a ``refused`` answer.
2. **Risk signal out.** A ``Communication`` with category ``risk.signal`` (status
   ``completed``; risk level and requested action as further categories, risk kinds as
   ``reasonCode``, the situation as ``payload.contentString``, the author as a PractitionerRole
   ``sender``, recipients by OIN and role, the case as an identifier) becomes a
   ``risk.signal`` under ``ZVH.RISICO``; ``priority`` ``stat``/``asap`` sets the emergency flag.
   The Patient is sent only as a pseudonym (HMAC of the BSN, or of the FHIR id, with the
   organisation's key) and, when configured, with BSN, name and birth date in the encrypted body.
3. **Warm handover in, accepted or declined.** A ``case.handover`` becomes a ``ServiceRequest``
   (plan, open tasks, risk, contacts) and a ``Task`` to accept it; the Patient is found by BSN or
   created from the handover's identification. The message stays unacknowledged until the staff
   set the Task to ``accepted`` (the ZVH gets ``accepted``) or ``rejected`` (the ZVH gets
   ``rejected``: ``adapter_rejected``).
4. **Everything else in** (status, invitations, plan tasks, closure, risk signals from others)
   becomes a received ``Communication`` with the body as a JSON attachment, then acked.

When zv-gateway refuses something the EHR produced (contract or policy), the adapter writes a
``Task`` with status ``failed`` whose ``focus`` is the source resource and whose
``statusReason`` says why, so the staff see it where they work.
"""

from adapters.fhir.adapter import FhirAdapter, FhirConfig, load, run

__all__ = ["FhirAdapter", "FhirConfig", "load", "run"]
