"""Object-level authorization: who added a store, the groups a store names, and the
grant-all permissions (certyard.accounts.authorization).

Upgrade path: whoever may change stores today gets ``manage_any_store``, and whoever may
change certificates' metadata or revoke (``enrollment.change_enrollmentrequest``) gets
``manage_any_certificate``, so existing installations keep working as before.
"""

import django.db.models.deletion
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
        "inventory",
        "certificatestore",
        "manage_any_store",
        "Can change any store, whoever added it",
        ["inventory.change_certificatestore", "inventory.delete_certificatestore"],
    )
    _grant(
        apps,
        "inventory",
        "certificate",
        "manage_any_certificate",
        "Can act on any certificate",
        [
            "inventory.change_certificate",
            "inventory.change_certificatemetadata",
            "enrollment.change_enrollmentrequest",
        ],
    )


class Migration(migrations.Migration):

    dependencies = [
        ('auth', '0012_alter_user_first_name_max_length'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('inventory', '0009_metadata_schedule'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='certificate',
            options={'ordering': ['not_after'], 'permissions': [('manage_any_certificate', 'Can act on any certificate')]},
        ),
        migrations.AlterModelOptions(
            name='certificatestore',
            options={'ordering': ['client_machine', 'store_path'], 'permissions': [('manage_any_store', 'Can change any store, whoever added it')]},
        ),
        migrations.AddField(
            model_name='certificatestore',
            name='created_by',
            field=models.ForeignKey(blank=True, help_text="Who added the store (empty: an agent's blueprint, or before this was kept); they may change it.", null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='certificatestore',
            name='groups',
            field=models.ManyToManyField(blank=True, help_text='People in these groups may change the store and act on the certificates it holds.', related_name='certificate_stores', to='auth.group'),
        ),
        migrations.RunPython(grant, migrations.RunPython.noop),
    ]
