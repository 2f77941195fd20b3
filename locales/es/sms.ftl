## veriflow SMS verification texts, Spanish. Variables: see en/sms.ftl.

verify = { $app_name }: tu código de verificación es { $code }. Caduca en { $minutes ->
        [one] { $minutes } minuto
       *[other] { $minutes } minutos
    }.

login = { $code } es tu código para { $app_name }. Caduca en { $minutes ->
        [one] { $minutes } minuto
       *[other] { $minutes } minutos
    }. No lo compartas.

signup = ¡Hola! Tu código de { $app_name } es { $code }. Caduca en { $minutes ->
        [one] { $minutes } minuto
       *[other] { $minutes } minutos
    }.

password-reset = { $app_name }: usa { $code } para restablecer tu contraseña. Caduca en { $minutes ->
        [one] { $minutes } minuto
       *[other] { $minutes } minutos
    }. ¿No lo pediste? Ignora este mensaje.

transaction = { $app_name }: { $code } confirma tu operación. Vale { $minutes ->
        [one] { $minutes } minuto
       *[other] { $minutes } minutos
    }. No lo compartas.
