## veriflow SMS verification texts, English (the fallback of every chain).
## One message per `service`; a tenant may override any of them per locale.
## Variables:
##   $code      the one-time code (text, so leading zeros survive)
##   $app_name  the product name; defaults to the tenant's branding company name
##   $minutes   minutes the code stays valid (a number: it selects plural forms)
## Keep texts short: every character past 160 (GSM-7) or 70 (UCS-2) costs a segment.

verify = { $app_name }: your verification code is { $code }. It expires in { $minutes ->
        [one] { $minutes } minute
       *[other] { $minutes } minutes
    }.

login = { $code } is your { $app_name } login code. It expires in { $minutes ->
        [one] { $minutes } minute
       *[other] { $minutes } minutes
    }. Never share it.

signup = Welcome to { $app_name }! Your code is { $code }. It expires in { $minutes ->
        [one] { $minutes } minute
       *[other] { $minutes } minutes
    }.

password-reset = { $app_name }: use { $code } to reset your password. It expires in { $minutes ->
        [one] { $minutes } minute
       *[other] { $minutes } minutes
    }. Didn't ask? Ignore this.

transaction = { $app_name }: { $code } confirms your transaction. Valid for { $minutes ->
        [one] { $minutes } minute
       *[other] { $minutes } minutes
    }. Never share it.
