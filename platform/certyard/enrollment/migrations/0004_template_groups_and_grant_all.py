"""Object-level authorization: the groups a template names, and the grant-all permissions
(certyard.accounts.authorization).

Upgrade path: whoever may approve or change enrollment requests today gets
``manage_any_enrollmentrequest``. ``recover_archived_key`` (reusing someone else's
archived key) is given to nobody: that is what was unsafe; superusers hold it, and an
administrator grants it on purpose.
"""

from django.conf import settings
from django.db import migrations, models
from django.db.models import Q


def _grant(apps, app_label, model, codename, name, holders_of):
    """Create the permission and give it to every user and group holding any of
    ``holders_of`` ("app_label.codename"), so installations keep working as before."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(app_label=app_label, model=model)
    granted, _ = Permission.objects.get_or_create(
        content_type=content_type, codename=codename, defaults={"name": name}
    )
    q = Q()
    for label in holders_of:
        app, code = label.split(".")
        q |= Q(content_type__app_label=app, codename=code)
    old = list(Permission.objects.filter(q).values_list("pk", flat=True))
    if not old:
        return
    for group in Group.objects.filter(permissions__in=old).distinct():
        group.permissions.add(granted)
    for user in User.objects.filter(user_permissions__in=old).distinct():
        user.user_permissions.add(granted)


def grant(apps, schema_editor):
    _grant(
        apps,
        "enrollment",
        "enrollmentrequest",
        "manage_any_enrollmentrequest",
        "Can act on anyone's enrollment requests",
        ["enrollment.approve_enrollmentrequest", "enrollment.change_enrollmentrequest"],
    )


class Migration(migrations.Migration):

    dependencies = [
        ('auth', '0012_alter_user_first_name_max_length'),
        ('contenttypes', '0002_remove_content_type_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ('enrollment', '0003_decided_by_handler'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='enrollmentrequest',
            options={'ordering': ['-created_at'], 'permissions': [('approve_enrollmentrequest', 'Can approve or deny enrollment requests'), ('manage_any_enrollmentrequest', "Can act on anyone's enrollment requests"), ('recover_archived_key', "Can reuse another person's archived private key")]},
        ),
        migrations.AddField(
            model_name='template',
            name='groups',
            field=models.ManyToManyField(blank=True, help_text='People in these groups may act on the certificates and requests of this template (renew, revoke, approve…), besides their requester.', related_name='enrollment_templates', to='auth.group'),
        ),
        migrations.RunPython(grant, migrations.RunPython.noop),
    ]
