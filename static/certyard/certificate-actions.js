// The certificate page's header actions (Renew, Revoke, Add to stores) open the collapsed
// section they name (data-opens: the section's data-testid) and bring it into view.
// Without this script the links still scroll to the card that holds the section.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-opens]");
  if (!link) {
    return;
  }
  const section = document.querySelector(`details[data-testid="${CSS.escape(link.dataset.opens)}"]`);
  if (!section) {
    return;
  }
  event.preventDefault();
  section.open = true;
  section.scrollIntoView({ block: "start" });
  const summary = section.querySelector("summary");
  if (summary) {
    summary.focus({ preventScroll: true });
  }
});
