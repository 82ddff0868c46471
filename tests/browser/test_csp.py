"""Issue 13, finding 10: in Chromium, the Content-Security-Policy lets the pinned htmx file run and refuses
any other script from the same CDN host."""
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

OTHER_CDN_SCRIPT = "https://cdn.jsdelivr.net/npm/other@1/x.js"

INJECT = """url => new Promise(resolve => {
  const violations = [];
  document.addEventListener("securitypolicyviolation", e => violations.push(e.blockedURI));
  const script = document.createElement("script");
  script.src = url;
  script.onload = () => resolve({loaded: true, violations, ran: window.__otherScriptRan === true});
  script.onerror = () => setTimeout(() => resolve({loaded: false, violations, ran: window.__otherScriptRan === true}), 100);
  document.head.appendChild(script);
})"""


def test_pinned_htmx_runs_and_another_script_from_the_cdn_is_refused(logged_in_page):
    page = logged_in_page
    served = []

    def answer(route):
        """Answer the other CDN script, so a refusal can only come from the policy, not the network."""
        served.append(route.request.url)
        route.fulfill(status=200, body="window.__otherScriptRan = true;",
                      headers={"Content-Type": "application/javascript", "Access-Control-Allow-Origin": "*"})

    page.route(OTHER_CDN_SCRIPT, answer)
    page.goto("/apps/stripe")
    page.wait_for_load_state("load")
    assert page.evaluate("typeof htmx") == "object"
    expect(page.get_by_role("button", name="Connect Account")).to_be_visible()

    result = page.evaluate(INJECT, OTHER_CDN_SCRIPT)
    assert result == {"loaded": False, "violations": [OTHER_CDN_SCRIPT], "ran": False}
    assert served == []
