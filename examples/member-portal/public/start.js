// The start page: fills in the plan, the member and the previous payers (GET /portal/payers), keeps the
// consent sentence naming the chosen payer, and checks the form before it is sent (the server checks too).
'use strict';

(function start() {
  const form = document.getElementById('connect-form');
  const payersBox = document.getElementById('payers');
  const problem = document.getElementById('problem');
  const consent = document.getElementById('consent');
  const button = document.getElementById('continue');
  let plan = 'your new plan';

  function setText(selector, text) {
    for (const el of document.querySelectorAll(selector)) el.textContent = text;
  }

  function showProblem(text, focusTarget) {
    problem.textContent = text;
    problem.hidden = false;
    (focusTarget || problem).focus();
  }

  function chosen() {
    const input = form.querySelector('input[name="pid"]:checked');
    return input ? { pid: input.value, name: input.dataset.name } : null;
  }

  function updateSentence() {
    const payer = chosen();
    setText('.payer-ref', payer ? payer.name : 'your previous health plan');
    button.textContent = payer ? `Continue to ${payer.name}` : 'Continue to sign in';
  }

  function renderPayers(payers) {
    payersBox.textContent = '';
    if (payers.length === 0) {
      const p = document.createElement('p');
      p.className = 'muted';
      p.textContent = 'No previous health plans are available yet.';
      payersBox.append(p);
      button.disabled = true;
      return;
    }
    const wanted = new URLSearchParams(location.search).get('pid');
    for (const payer of payers) {
      const row = document.createElement('div');
      row.className = 'choice';
      const input = document.createElement('input');
      input.type = 'radio';
      input.name = 'pid';
      input.id = `payer-${payer.pid}`;
      input.value = String(payer.pid);
      input.dataset.name = payer.name;
      input.required = true;
      if (String(payer.pid) === wanted || payers.length === 1) input.checked = true;
      input.addEventListener('change', updateSentence);
      const label = document.createElement('label');
      label.htmlFor = input.id;
      label.textContent = payer.name;
      row.append(input, label);
      payersBox.append(row);
    }
    updateSentence();
  }

  form.addEventListener('submit', (event) => {
    if (!chosen()) {
      event.preventDefault();
      const first = form.querySelector('input[name="pid"]');
      showProblem('Please choose your previous health plan.', first || undefined);
      return;
    }
    if (!consent.checked) {
      event.preventDefault();
      showProblem('Please tick the box to give your permission. Without it, nothing is copied.', consent);
      return;
    }
    button.disabled = true;
    button.textContent = `Taking you to ${chosen().name}…`;
  });

  // Back from the server with a problem (e.g. the box was not ticked without JavaScript's check).
  const fromServer = new URLSearchParams(location.search).get('problem');

  fetch('/portal/payers', { headers: { Accept: 'application/json' } })
    .then((response) => response.json().then((body) => ({ ok: response.ok, body })))
    .then(({ ok, body }) => {
      plan = body.plan || plan;
      setText('#plan-name', plan);
      setText('.plan-ref', plan);
      setText('#member-name', body.member || 'a member');
      document.title = `Bring your health records to ${plan}`;
      if (!ok) {
        payersBox.textContent = '';
        showProblem(body.problem || 'The list of health plans cannot be loaded right now. Please try again in a minute.');
        return;
      }
      renderPayers(body.payers || []);
      if (fromServer === 'consent') showProblem('Please tick the box to give your permission. Without it, nothing is copied.', consent);
      if (fromServer === 'choose-payer') showProblem('Please choose your previous health plan.');
    })
    .catch(() => {
      payersBox.textContent = '';
      showProblem('The list of health plans cannot be loaded right now. Please check your connection and reload the page.');
    });
})();
