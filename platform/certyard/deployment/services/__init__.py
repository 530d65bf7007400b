"""The deployment app's write side: every change goes through these functions.

Delivery (add/remove jobs and their results) is ``delivery``; renew-and-replace is
``renewal``; enrollment target stores are ``targets``; discovery and re-enrollment with a
key made on the device are ``discovery`` and ``reenrollment``.
"""

from certyard.deployment.services.delivery import (
    certificate_deploy,
    certificate_undeploy,
    deployment_job_finished,
    store_create_request,
    stores_matching,
)
from certyard.deployment.services.renewal import (
    certificate_renew_and_replace,
    certificate_renew_and_replace_for_handler,
)
from certyard.deployment.services.targets import enrollment_issued_deliver

__all__ = [
    "certificate_deploy",
    "certificate_renew_and_replace",
    "certificate_renew_and_replace_for_handler",
    "certificate_undeploy",
    "deployment_job_finished",
    "enrollment_issued_deliver",
    "store_create_request",
    "stores_matching",
]
