from django.apps import AppConfig


class JobsConfig(AppConfig):
    """Jobs for orchestrators: leasing, results, schedules. Sits above fleet and inventory."""

    name = "certyard.jobs"
    label = "jobs"

    def ready(self) -> None:
        # fleet sits below jobs: when it locks an orchestrator out, it calls what we register.
        from certyard.fleet.services import orchestrator_lockout_hook_register
        from certyard.jobs.services import jobs_release_for_orchestrator

        orchestrator_lockout_hook_register(jobs_release_for_orchestrator)

        # Job complete handlers ask for follow-up jobs as data; jobs carries them out.
        from certyard.jobs.services import job_request_for_handler
        from certyard.workflows.services import action_applier_register

        action_applier_register("schedule_job", job_request_for_handler)

        # The expiry scan and the job upkeep, runnable now (certyard.workflows.scheduled).
        from certyard.jobs.tasks import SCHEDULED_TASKS
        from certyard.workflows.scheduled import scheduled_task_register

        for task in SCHEDULED_TASKS:
            scheduled_task_register(task)
