// What the member reads when the connect flow does not end with their records copied: one message per
// error code the service sends back (GET /oauth/callback -> returnUrl?error=CODE, and the
// authorization's `error`), plus the portal's own codes (not_started_here, link_incomplete,
// completion_refused, job_not_created, start_failed, still_pending). Written for the member, not for
// operators: what happened, whether anything was copied, and what they can do.

export function errorMessage(code, payer, plan) {
  switch (code) {
    case 'access_denied':
      return `You did not give permission at ${payer}, so nothing was copied. You can try again.`;
    case 'expired':
      return `The sign-in at ${payer} took longer than 10 minutes, so it was cancelled and nothing was copied. Please start again.`;
    case 'authorization_failed':
      return `${payer} could not complete your sign-in, so nothing was copied. Please try again later.`;
    case 'token_exchange_failed':
      return `${payer} did not confirm your sign-in to ${plan}, so nothing was copied. Please try again later.`;
    case 'id_token_invalid':
      return `We could not verify your sign-in at ${payer}, so nothing was copied for your safety. Please try again later.`;
    case 'patient_unknown':
      return `${payer} did not tell us which member record is yours, so nothing was copied. Please contact ${plan} member services.`;
    case 'exchange_in_progress':
      return `Your records from ${payer} are already being copied. Please wait for that copy to finish.`;
    case 'job_not_created':
      return `Your sign-in at ${payer} worked, but ${plan} could not start copying your records. Please try again later.`;
    case 'not_started_here':
      // A link back that this browser's session did not start (e.g. a sign-in link someone forwarded).
      // (It does not name a payer: the link may be for any.)
      return `This link was not started from your account here, so nothing was copied. Do not use sign-in links someone else sent you: to bring your records to ${plan}, start here and sign in at your previous health plan yourself.`;
    case 'link_incomplete':
      return `The link back from ${payer} was incomplete, so nothing was copied. Please start again.`;
    case 'completion_refused':
      return `Your sign-in at ${payer} could not be used to copy your records (the link back was not valid, was used already, or came too late), so nothing was copied. Please start again.`;
    case 'start_failed':
      return `We could not connect to ${payer} just now, so nothing was copied. Please try again in a few minutes.`;
    case 'still_pending':
      return `We have not heard back from ${payer} yet. If you finished signing in there, please start again.`;
    case 'server_error':
    default:
      return `Something went wrong on our side, so nothing was copied from ${payer}. Please try again later.`;
  }
}

// A job that ended FAILED: `lastError` is written for operators; the member gets the gist.
export function jobFailureMessage(lastError, written, payer, plan) {
  const arrived = written > 0
    ? `${written} record${written === 1 ? '' : 's'} arrived before it stopped and ${written === 1 ? 'is' : 'are'} kept.`
    : 'Nothing was copied.';
  if (typeof lastError === 'string' && /must sign in at the source payer again/.test(lastError)) {
    return `Copying stopped because your permission at ${payer} ended. ${arrived} Please start again and sign in at ${payer}.`;
  }
  return `Copying from ${payer} stopped before it finished. ${arrived} Please try again later; if it keeps happening, contact ${plan} member services.`;
}

// The short heading above errorMessage().
export function errorTitle(code) {
  switch (code) {
    case 'access_denied': return 'Permission not given';
    case 'expired': return 'The sign-in took too long';
    case 'exchange_in_progress': return 'Already on its way';
    case 'not_started_here': return 'Nothing was copied from this link';
    case 'link_incomplete':
    case 'completion_refused': return 'Please start again';
    default: return 'Nothing was copied';
  }
}
